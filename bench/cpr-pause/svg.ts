// The plot: median pause (min-max bars) against guest RAM size, one colour per flow, solid for an old process that
// had not touched its RAM and dashed for one that had, QEMU's medians from issue 3 as hollow diamonds on dotted
// lines. Both axes are logarithmic (RAM sizes are powers of two; pauses span 1-1000 ms). Plain SVG, no library:
// the drawing is a few dozen elements.
import { FLOWS, type FlowId } from './flows.js';
import { SIZE_BYTES, type GroupResult } from './report.js';

const W = 860;
const H = 500;
const M = { left: 70, right: 270, top: 50, bottom: 60 };
const COLOURS: Record<FlowId, string> = {
  'reboot-incoming': '#1f77b4',
  'reboot-cpr-load': '#9467bd',
  'reboot-prestarted': '#ff7f0e',
  transfer: '#2ca02c',
  exec: '#d62728',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f = (n: number) => n.toFixed(1);

export function pausePlot(groups: readonly GroupResult[], subtitle: string): string {
  const sizes = Object.keys(SIZE_BYTES).filter((s) => groups.some((g) => g.size === s));
  const values = groups.flatMap((g) => [g.pause.min, g.pause.max, g.qemuMs ?? g.pause.median]).filter((v) => v > 0);
  const yLo = 10 ** Math.floor(Math.log10(Math.min(...values, 1)));
  const yHi = 10 ** Math.ceil(Math.log10(Math.max(...values, 10)));
  const lx = (bytes: number) => Math.log2(bytes);
  const xMin = lx(SIZE_BYTES[sizes[0]]) - 0.6;
  const xMax = lx(SIZE_BYTES[sizes[sizes.length - 1]]) + 0.6;
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const x = (bytes: number, nudge = 0) => M.left + ((lx(bytes) - xMin) / (xMax - xMin)) * plotW + nudge;
  const y = (ms: number) =>
    M.top + (1 - (Math.log10(ms) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${M.left}" y="22" font-size="15" font-weight="bold">tsvmm checkpoint/restart: guest pause vs RAM size</text>`,
  );
  out.push(`<text x="${M.left}" y="38" fill="#555">${esc(subtitle)}</text>`);
  // Grid: 1-2-5 per decade on the pause axis, one line per size.
  for (let decade = yLo; decade < yHi * 1.001; decade *= 10) {
    for (const k of [1, 2, 5]) {
      const v = decade * k;
      if (v > yHi * 1.001) break;
      const yy = f(y(v));
      out.push(
        `<line x1="${M.left}" x2="${W - M.right}" y1="${yy}" y2="${yy}" stroke="${k === 1 ? '#ccc' : '#eee'}"/>`,
      );
      out.push(
        `<text x="${M.left - 6}" y="${f(y(v) + 4)}" text-anchor="end" fill="#444">${v >= 1 ? v : v.toPrecision(1)}</text>`,
      );
    }
  }
  for (const s of sizes) {
    const xx = f(x(SIZE_BYTES[s]));
    out.push(`<line x1="${xx}" x2="${xx}" y1="${M.top}" y2="${H - M.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${xx}" y="${H - M.bottom + 18}" text-anchor="middle">${s}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  out.push(
    `<text x="${M.left + plotW / 2}" y="${H - 18}" text-anchor="middle">guest RAM (memory-backend-file on /dev/shm, share=on)</text>`,
  );
  out.push(
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle">pause, ms (last old tick → first new tick; log scale)</text>`,
  );

  const flows = FLOWS.filter((fl) => groups.some((g) => g.flow === fl.id));
  flows.forEach((flow, fi) => {
    const colour = COLOURS[flow.id];
    const nudge = (fi - (flows.length - 1) / 2) * 11;
    for (const touched of [false, true]) {
      const gs = groups
        .filter((g) => g.flow === flow.id && g.touched === touched)
        .sort((a, b) => a.sizeBytes - b.sizeBytes);
      if (gs.length === 0) continue;
      const dx = nudge + (touched ? 3 : 0);
      const points = gs.map((g) => `${f(x(g.sizeBytes, dx))},${f(y(g.pause.median))}`).join(' ');
      out.push(
        `<polyline points="${points}" fill="none" stroke="${colour}" stroke-width="2"${touched ? ' stroke-dasharray="6 4"' : ''}/>`,
      );
      for (const g of gs) {
        const xx = f(x(g.sizeBytes, dx));
        out.push(
          `<line x1="${xx}" x2="${xx}" y1="${f(y(g.pause.min))}" y2="${f(y(g.pause.max))}" stroke="${colour}" stroke-width="1.5"/>`,
        );
        const tip = `${flow.id} ${g.size} ${touched ? 'touched' : 'untouched'}: median ${g.pause.median} ms (${g.pause.min}-${g.pause.max})`;
        out.push(
          touched
            ? `<rect x="${f(x(g.sizeBytes, dx) - 3.5)}" y="${f(y(g.pause.median) - 3.5)}" width="7" height="7" fill="${colour}"><title>${esc(tip)}</title></rect>`
            : `<circle cx="${xx}" cy="${f(y(g.pause.median))}" r="4" fill="${colour}"><title>${esc(tip)}</title></circle>`,
        );
      }
    }
    // tsvmm's own target where it is not simply QEMU's number: a short bar in the flow's colour.
    for (const s of sizes) {
      const target = flow.targetMs(flow.qemuMs?.[s]);
      if (target === null || target === flow.qemuMs?.[s]) continue;
      const xx = x(SIZE_BYTES[s], nudge);
      out.push(
        `<line x1="${f(xx - 9)}" x2="${f(xx + 9)}" y1="${f(y(target))}" y2="${f(y(target))}" stroke="${colour}" stroke-width="3" opacity="0.6"/>`,
      );
    }
    const qemu = sizes.filter((s) => flow.qemuMs?.[s] !== undefined);
    if (qemu.length) {
      const pts = qemu.map((s) => [x(SIZE_BYTES[s], nudge), y(flow.qemuMs![s])] as const);
      out.push(
        `<polyline points="${pts.map(([a, b]) => `${f(a)},${f(b)}`).join(' ')}" fill="none" stroke="${colour}" stroke-width="1" stroke-dasharray="1 3"/>`,
      );
      for (const [a, b] of pts)
        out.push(
          `<path d="M${f(a)} ${f(b - 5)} l5 5 l-5 5 l-5 -5 z" fill="white" stroke="${colour}" stroke-width="1.5"/>`,
        );
    }
  });

  // Legend.
  let ly = M.top + 4;
  const lx0 = W - M.right + 16;
  for (const flow of flows) {
    const colour = COLOURS[flow.id];
    out.push(`<line x1="${lx0}" x2="${lx0 + 24}" y1="${ly}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<circle cx="${lx0 + 12}" cy="${ly}" r="4" fill="${colour}"/>`);
    out.push(`<text x="${lx0 + 32}" y="${ly + 4}" font-weight="bold">${esc(flow.id)}</text>`);
    ly += 17;
  }
  ly += 6;
  const legend: Array<[string, string]> = [
    [
      `<line x1="${lx0}" x2="${lx0 + 24}" y1="0" y2="0" stroke="#333" stroke-width="2"/><circle cx="${lx0 + 12}" cy="0" r="4" fill="#333"/>`,
      'old RAM untouched',
    ],
    [
      `<line x1="${lx0}" x2="${lx0 + 24}" y1="0" y2="0" stroke="#333" stroke-width="2" stroke-dasharray="6 4"/><rect x="${lx0 + 8.5}" y="-3.5" width="7" height="7" fill="#333"/>`,
      'old RAM touched (-mem-prealloc)',
    ],
    [
      `<line x1="${lx0}" x2="${lx0 + 24}" y1="0" y2="0" stroke="#333" stroke-dasharray="1 3"/><path d="M${lx0 + 12} -5 l5 5 l-5 5 l-5 -5 z" fill="white" stroke="#333" stroke-width="1.5"/>`,
      'QEMU 10 median (issue 3)',
    ],
    [
      `<line x1="${lx0 + 3}" x2="${lx0 + 21}" y1="0" y2="0" stroke="#333" stroke-width="3" opacity="0.6"/>`,
      'tsvmm target (where not = QEMU)',
    ],
    [
      `<line x1="${lx0 + 12}" x2="${lx0 + 12}" y1="-7" y2="7" stroke="#333" stroke-width="1.5"/>`,
      'min-max of the runs',
    ],
  ];
  for (const [shape, text] of legend) {
    out.push(`<g transform="translate(0 ${ly})">${shape}<text x="${lx0 + 32}" y="4">${esc(text)}</text></g>`);
    ly += 18;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
