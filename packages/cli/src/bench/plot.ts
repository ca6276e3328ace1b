/**
 * `fewstep bench kernels --peer ort --plot out.svg`: ours vs the peer per op, as a dependency-free SVG.
 * One group per case, two horizontal bars (fewstep f32 ms, peer ms) on a log scale, with the speedup.
 */

export interface PlotRow {
  case: string;
  dtype: string;
  median_ms: number;
  peer_ms?: number | undefined;
  peer_ep?: string | undefined;
  speedup?: number | undefined;
  error?: string | undefined;
}

export interface PlotOptions {
  title: string;
  adapter: string;
  /** Shown under the title, e.g. an ISO date. */
  date: string;
  /** Legend label for the peer bars (default: "ORT <peer_ep> EP"). */
  peerLabel?: string | undefined;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmtMs = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toPrecision(2));
const fmtX = (x: number) => (x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(2));

/** The f32 rows that have both a time of ours and a peer time. */
export function plottableRows<R extends PlotRow>(rows: R[]): R[] {
  return rows.filter((r) => r.dtype === 'f32' && !r.error && Number.isFinite(r.median_ms) && r.median_ms > 0 && typeof r.peer_ms === 'number' && r.peer_ms > 0);
}

export function speedupSvg(rows: PlotRow[], opts: PlotOptions): string {
  const data = plottableRows(rows);
  const peerLabel = opts.peerLabel ?? (data[0]?.peer_ep ? `ONNX Runtime ${data[0].peer_ep} EP` : 'ONNX Runtime');
  const W = 900, labelW = 230, right = 150, top = 78, barH = 14, gap = 4, groupH = 2 * barH + gap + 18, bottom = 50;
  const plotW = W - labelW - right;
  const H = top + Math.max(1, data.length) * groupH + bottom;
  const all = data.flatMap((r) => [r.median_ms, r.peer_ms!]);
  const lo = Math.pow(10, Math.floor(Math.log10(all.length ? Math.min(...all) : 1)));
  const hi = Math.pow(10, Math.ceil(Math.log10(all.length ? Math.max(...all) : 10)));
  const decades = Math.max(1, Math.log10(hi / lo));
  const x = (ms: number) => labelW + (Math.log10(ms / lo) / decades) * plotW;
  const ours = '#2b6cb0', peer = '#c05621';
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${esc(opts.title)}</text>`);
  out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(`${opts.adapter} · ${opts.date} · median ms, log scale, lower is better`)}</text>`);
  // Legend.
  out.push(`<rect x="${labelW}" y="52" width="12" height="12" fill="${ours}"/><text x="${labelW + 16}" y="62">fewstep (f32)</text>`);
  out.push(`<rect x="${labelW + 120}" y="52" width="12" height="12" fill="${peer}"/><text x="${labelW + 136}" y="62">${esc(peerLabel)}</text>`);
  out.push(`<text x="${W - 10}" y="62" text-anchor="end" fill="#555">speedup = peer / fewstep</text>`);
  // Decade grid lines and axis labels.
  const axisY = top + Math.max(1, data.length) * groupH;
  const e0 = Math.round(Math.log10(lo));
  for (let e = e0; e <= e0 + Math.round(decades); e++) {
    const v = Math.pow(10, e);
    const gx = x(v).toFixed(1);
    out.push(`<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${axisY}" stroke="#ddd"/>`);
    out.push(`<text x="${gx}" y="${axisY + 16}" text-anchor="middle" fill="#555">${e >= 0 ? String(v) : v.toFixed(-e)} ms</text>`);
  }
  if (!data.length) out.push(`<text x="${labelW + plotW / 2}" y="${top + groupH / 2}" text-anchor="middle" fill="#900">no cases with both fewstep and peer times</text>`);
  data.forEach((r, i) => {
    const y0 = top + i * groupH;
    const sp = r.speedup ?? r.peer_ms! / r.median_ms;
    out.push(`<g><title>${esc(`${r.case}: fewstep ${fmtMs(r.median_ms)} ms, peer ${fmtMs(r.peer_ms!)} ms, ${fmtX(sp)}×`)}</title>`);
    out.push(`<text x="${labelW - 8}" y="${y0 + barH + gap / 2 + 4}" text-anchor="end">${esc(r.case)}</text>`);
    for (const [j, ms, color] of [[0, r.median_ms, ours], [1, r.peer_ms!, peer]] as const) {
      const by = y0 + j * (barH + gap);
      const w = Math.max(1, x(ms) - labelW);
      out.push(`<rect x="${labelW}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${color}"/>`);
      out.push(`<text x="${(labelW + w + 4).toFixed(1)}" y="${by + barH - 3}" font-size="11">${fmtMs(ms)}</text>`);
    }
    out.push(`<text x="${W - 10}" y="${y0 + barH + gap / 2 + 4}" text-anchor="end" font-weight="bold" fill="${sp >= 1 ? '#276749' : '#9b2c2c'}">${fmtX(sp)}×${sp >= 1 ? ' faster' : ' slower'}</text>`);
    out.push('</g>');
  });
  out.push(`<line x1="${labelW}" y1="${axisY}" x2="${labelW + plotW}" y2="${axisY}" stroke="#888"/>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
