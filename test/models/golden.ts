// Shared helpers for golden-fixture model tests: the fixture folder holds io.safetensors next to the
// weights, so fromFolder() runs on a temp folder that links only config.json and model.safetensors.
import { mkdtempSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '@fewstep/tensor';
import { nodeFiles } from '@fewstep/tensor/node';

export const goldenRoot = new URL('../fixtures/golden/', import.meta.url).pathname;

export interface GoldenCase {
  dir: string;
  io: SafetensorsFile;
  caseJson: { outputs: Record<string, { shape: number[]; suggested: { atol: number; rtol: number } }> };
}

export async function openGolden(name: string): Promise<GoldenCase> {
  const dir = join(goldenRoot, name);
  const io = await SafetensorsFile.open(nodeFiles, join(dir, 'io.safetensors'));
  const caseJson = JSON.parse(await nodeFiles.readText(join(dir, 'case.json')));
  return { dir, io, caseJson };
}

/** A temp component folder with links to the case's config.json and model.safetensors; returns [dir, cleanup]. */
export function componentDir(name: string, weightName = 'model.safetensors'): [string, () => void] {
  const dir = mkdtempSync(join(tmpdir(), `fewstep-${name}-`));
  symlinkSync(join(goldenRoot, name, 'config.json'), join(dir, 'config.json'));
  symlinkSync(join(goldenRoot, name, 'model.safetensors'), join(dir, weightName));
  return [dir, () => rmSync(dir, { recursive: true, force: true })];
}
