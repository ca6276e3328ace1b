/** Builds the page (see build.mjs). */
export function buildPage(opts?: { outdir?: string; source?: boolean; minify?: boolean; quiet?: boolean }): Promise<{ outdir: string; files: string[]; bytes: Record<string, number> }>;
