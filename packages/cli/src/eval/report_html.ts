/**
 * The HTML pages of an evaluation (self-contained: inline SVG and CSS, a few lines of script, no network):
 * a run's report.html — mean CLIP score per category and per challenge as bar charts with 95% intervals,
 * above the contact sheet (grouped by category; sortable by score) — and the side-by-side page of
 * `fewstep report runA runB`.
 */
import type { ResultLine } from './results.js';
import type { GroupSummary, RunSummary } from './summary.js';
import type { CompareRow, RunComparison } from './compare.js';

export const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const num = (v: number | null | undefined, digits = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–');

const STYLE = `body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.sub { color: #666; } nav { margin: 0.8em 0; } small { color: #777; }
.charts { display: flex; flex-wrap: wrap; gap: 2em; } .chart h3 { margin: 0.4em 0; font-size: 1.05em; }
svg text { font: 12px system-ui, sans-serif; fill: #333; } svg .v { fill: #555; }
table { border-collapse: collapse; margin: 0.6em 0; } td, th { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; }
td:first-child, th:first-child { text-align: left; } .up { color: #1a7f37; } .down { color: #c62828; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; padding: 6px; border: 1px solid #e4e4e4; border-radius: 4px; }
img { width: 100%; height: auto; display: block; } figcaption { margin-top: 4px; font-size: 12px; }`;

function page(title: string, subtitle: string, body: string, script = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
${STYLE}
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<p class="sub">${esc(subtitle)}</p>
${body}
${script ? `<script>\n${script}\n</script>` : ''}
</body>
</html>
`;
}

export interface Bar {
  label: string;
  /** One entry per run compared (one for a report, two for a comparison). */
  values: { mean: number | null; ci95: [number, number] | null; count: number }[];
}

const COLORS = ['#3b6fb6', '#e08a2e'];

/**
 * The end of the score axis for a set of bars: the largest mean or interval end shown, at most 100 (CLIP scores lie in
 * [0, 100]; a small sample's interval may reach past it, and its whisker is cut at the edge), rounded up to a tick.
 */
export function axisTop(bars: readonly Bar[]): number {
  const max = Math.min(100, Math.max(1, ...bars.flatMap((b) => b.values.map((v) => v.ci95?.[1] ?? v.mean ?? 0))));
  return Math.min(100, Math.ceil(max / 10) * 10);
}

/**
 * Horizontal bars (mean) with 95% whiskers, one row per group, `values.length` bars per row, on an axis from 0 to `top`
 * (default axisTop(bars); charts shown together should share one) with a gridline every 10.
 */
export function barChart(title: string, bars: readonly Bar[], top = axisTop(bars)): string {
  const per = bars[0]?.values.length ?? 1;
  const rowH = 8 + 14 * per, labelW = 190, plotW = 360, valueW = 120;
  const x = (v: number) => labelW + (Math.min(top, Math.max(0, v)) / top) * plotW;
  const plotH = 6 + bars.length * rowH;
  const grid: string[] = [];
  for (let t = 0; t <= top; t += 10) {
    const gx = x(t).toFixed(1);
    grid.push(`<path d="M${gx} 2V${plotH}" stroke="${t === 0 ? '#999' : '#e2e2e2'}"/><text class="v" x="${gx}" y="${plotH + 12}" text-anchor="middle" font-size="10">${t}</text>`);
  }
  const rows = bars.map((b, i) => {
    const y0 = 6 + i * rowH;
    const parts = [`<text x="${labelW - 8}" y="${y0 + (rowH - 8) / 2 + 4}" text-anchor="end">${esc(b.label.length > 28 ? b.label.slice(0, 27) + '…' : b.label)}</text>`];
    b.values.forEach((v, j) => {
      const y = y0 + j * 14;
      if (v.mean !== null) parts.push(`<rect x="${labelW}" y="${y}" width="${(x(v.mean) - labelW).toFixed(1)}" height="11" fill="${COLORS[j % 2]}"><title>${esc(b.label)}: ${num(v.mean)} (n=${v.count})</title></rect>`);
      if (v.ci95) {
        const [a, c] = [x(v.ci95[0]), x(v.ci95[1])];
        parts.push(`<path d="M${a.toFixed(1)} ${y + 5.5}H${c.toFixed(1)}M${a.toFixed(1)} ${y + 2}v7M${c.toFixed(1)} ${y + 2}v7" stroke="#222" fill="none"/>`);
      }
      parts.push(`<text class="v" x="${labelW + plotW + 8}" y="${y + 10}">${num(v.mean)}${v.ci95 ? ` ±${num((v.ci95[1] - v.ci95[0]) / 2)}` : ''} <tspan font-size="10">n=${v.count}</tspan></text>`);
    });
    return parts.join('');
  });
  const h = plotH + 18;
  return `<div class="chart"><h3>${esc(title)}</h3><svg width="${labelW + plotW + valueW + 20}" height="${h}" role="img" aria-label="${esc(title)}">${grid.join('')}${rows.join('')}</svg></div>`;
}

const barsOf = (groups: Record<string, GroupSummary>): Bar[] =>
  Object.entries(groups).map(([label, g]) => ({ label, values: [{ mean: g.mean, ci95: g.ci95, count: g.count }] }));

function summaryTable(s: RunSummary): string {
  const row = (name: string, g: GroupSummary) =>
    `<tr><td>${esc(name)}</td><td>${g.count}</td><td>${num(g.mean)}</td><td>${g.ci95 ? `${num(g.ci95[0])} – ${num(g.ci95[1])}` : '–'}</td><td>${num(g.images_per_second, 3)}</td></tr>`;
  return `<table><tr><th></th><th>images</th><th>mean CLIP score</th><th>95% CI</th><th>images/s</th></tr>${row('all', s.overall)}</table>`;
}

/** A run's report.html: the summary charts, then the contact sheet (grouped by category, sortable by score). */
export function runReportHtml(summary: RunSummary, results: readonly ResultLine[], title: string, subtitle: string): string {
  const scored = summary.overall.scored > 0;
  const [byCategory, byChallenge] = [barsOf(summary.categories), barsOf(summary.challenges)];
  const top = axisTop([...byCategory, ...byChallenge]);
  const charts = scored
    ? `<div class="charts">${barChart('Mean CLIP score by category', byCategory, top)}${barChart('Mean CLIP score by challenge', byChallenge, top)}</div>`
    : '<p><small>Not scored yet: <code>fewstep score --run &lt;this folder&gt;</code> adds CLIP scores.</small></p>';
  const sorted = [...results].sort((a, b) => a.row - b.row || a.file.localeCompare(b.file));
  const groups = new Map<string, ResultLine[]>();
  for (const r of sorted) {
    const k = r.category || 'Uncategorized';
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(r);
  }
  const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'x';
  const nav = [...groups].map(([k, rs]) => `<a href="#${esc(slug(k))}">${esc(k)} (${rs.length})</a>`).join(' · ');
  const sections = [...groups]
    .map(([k, rs]) => {
      const figs = rs
        .map((r) => {
          const href = esc(encodeURIComponent(r.file));
          const score = typeof r.clip_score === 'number' ? r.clip_score : null;
          const meta = [r.challenge, `seed ${r.seed}`, score !== null ? `CLIP ${score.toFixed(2)}` : '', `${Number(r.seconds).toFixed(2)} s`].filter(Boolean).map(esc).join(' · ');
          return `<figure data-row="${r.row}" data-score="${score ?? ''}"><a href="${href}"><img src="${href}" alt="${esc(r.prompt)}" loading="lazy"></a><figcaption>${esc(r.prompt)}<br><small>${meta}</small></figcaption></figure>`;
        })
        .join('\n');
      return `<h2 id="${esc(slug(k))}">${esc(k)} <small>(${rs.length})</small></h2>\n<div class="grid">\n${figs}\n</div>`;
    })
    .join('\n');
  const sorter = scored ? `<p>Sort: <select id="sort"><option value="row">prompt order</option><option value="desc">CLIP score, high first</option><option value="asc">CLIP score, low first</option></select></p>` : '';
  const script = scored
    ? `document.getElementById('sort').addEventListener('change', (e) => {
  const how = e.target.value;
  const key = (f) => (how === 'row' ? Number(f.dataset.row) : Number(f.dataset.score || -1) * (how === 'desc' ? -1 : 1));
  for (const grid of document.querySelectorAll('.grid')) [...grid.children].sort((a, b) => key(a) - key(b)).forEach((f) => grid.appendChild(f));
});`
    : '';
  return page(title, subtitle, `${summaryTable(summary)}\n${charts}\n<nav>${nav}</nav>\n${sorter}\n${sections}`, script);
}

function compareTable(title: string, rows: readonly CompareRow[], names: [string, string]): string {
  const tr = rows
    .map((r) => {
      const cls = r.delta === null || r.overlap !== false ? '' : r.delta > 0 ? ' class="up"' : ' class="down"';
      return `<tr><td>${esc(r.group)}</td><td>${r.a.count}</td><td>${num(r.a.mean)}</td><td>${r.b.count}</td><td>${num(r.b.mean)}</td><td${cls}>${r.delta === null ? '–' : (r.delta >= 0 ? '+' : '') + num(r.delta)}</td><td>${r.overlap === null ? '–' : r.overlap ? 'yes' : 'no'}</td></tr>`;
    })
    .join('');
  return `<h2>${esc(title)}</h2><table><tr><th></th><th>n</th><th>${esc(names[0])}</th><th>n</th><th>${esc(names[1])}</th><th>Δ (B − A)</th><th>95% CIs overlap</th></tr>${tr}</table>`;
}

/** The side-by-side page of two runs: paired bars and tables per category and challenge. */
export function compareHtml(c: RunComparison): string {
  const names: [string, string] = [`A: ${c.a.name}`, `B: ${c.b.name}`];
  const bars = (rows: readonly CompareRow[]): Bar[] => rows.map((r) => ({ label: r.group, values: [r.a, r.b] }));
  const top = axisTop([...bars(c.categories), ...bars(c.challenges)]);
  const legend = `<p><svg width="12" height="12"><rect width="12" height="12" fill="${COLORS[0]}"/></svg> ${esc(names[0])} &nbsp; <svg width="12" height="12"><rect width="12" height="12" fill="${COLORS[1]}"/></svg> ${esc(names[1])}</p>`;
  const body = [
    legend,
    `<div class="charts">${barChart('By category', bars(c.categories), top)}${barChart('By challenge', bars(c.challenges), top)}</div>`,
    compareTable('Overall', [c.overall], names),
    compareTable('By category', c.categories, names),
    compareTable('By challenge', c.challenges, names),
    c.settingsDiff.length ? `<h2>Settings that differ</h2><table><tr><th></th><th>A</th><th>B</th></tr>${c.settingsDiff.map(([k, a, b]) => `<tr><td>${esc(k)}</td><td>${esc(String(a ?? '–'))}</td><td>${esc(String(b ?? '–'))}</td></tr>`).join('')}</table>` : '',
  ].join('\n');
  return page('fewstep report: A vs B', `${c.a.name} vs ${c.b.name}`, body);
}
