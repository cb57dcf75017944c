/**
 * The demo's chart: stacked bars of the importance weights (IN, LN, BN) per SN layer, one bar per
 * batch size, one panel for the means and one for the variances, as a standalone SVG string.
 *
 * @module
 */

/** One run's weights for one layer, order in, ln, bn (in = 0 for a layer without IN). */
export interface RunImportance {
  readonly batch: number;
  readonly mean: readonly number[];
  readonly var: readonly number[];
}

/** One SN layer and its weights in each run. */
export interface LayerImportance {
  readonly name: string;
  readonly runs: readonly RunImportance[];
}

const PARTS = [
  { key: "IN", label: "IN (instance)", color: "#4e79a7" },
  { key: "LN", label: "LN (layer)", color: "#f28e2b" },
  { key: "BN", label: "BN (batch)", color: "#59a14f" },
] as const;

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const f = (v: number) => +v.toFixed(1);

/** The chart as SVG text. */
export function importanceChart(
  layers: readonly LayerImportance[],
  options: { title: string; note?: string },
): string {
  const barW = 34, barGap = 10, groupGap = 34, plotH = 260;
  const runsPerLayer = Math.max(...layers.map((l) => l.runs.length));
  const groupW = runsPerLayer * barW + (runsPerLayer - 1) * barGap;
  const panelPlotW = layers.length * groupW + (layers.length + 1) * groupGap;
  const axisW = 58, panelGap = 40, marginR = 20;
  const panelW = axisW + panelPlotW;
  const width = 2 * panelW + panelGap + marginR;
  const top = 96, bottom = options.note ? 98 : 78;
  const height = top + plotH + bottom;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold">${
      esc(options.title)
    }</text>`,
  );
  // legend, centred under the title
  const itemW = 140, legendX = width / 2 - (PARTS.length * itemW) / 2;
  PARTS.forEach((p, i) => {
    const x = legendX + i * itemW;
    out.push(
      `<rect x="${x}" y="42" width="14" height="14" fill="${p.color}"/>`,
      `<text x="${x + 20}" y="54" font-size="13">${esc(p.label)}</text>`,
    );
  });

  const panels = [
    { title: "importance of the means", pick: (r: RunImportance) => r.mean },
    { title: "importance of the variances", pick: (r: RunImportance) => r.var },
  ];
  panels.forEach((panel, pi) => {
    const x0 = pi * (panelW + panelGap) + axisW; // left edge of the plot area
    const y0 = top, yBase = top + plotH;
    const y = (v: number) => yBase - v * plotH;
    out.push(
      `<text x="${x0 + panelPlotW / 2}" y="${top - 14}" text-anchor="middle" font-size="14" ` +
        `font-weight="bold">${esc(panel.title)}</text>`,
    );
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      out.push(
        `<line x1="${x0}" x2="${x0 + panelPlotW}" y1="${f(y(t))}" y2="${f(y(t))}" ` +
          `stroke="${t === 0 ? "#333" : "#ddd"}" stroke-width="1"/>`,
        `<text x="${x0 - 6}" y="${f(y(t) + 4)}" text-anchor="end" font-size="11">${
          t.toFixed(2)
        }</text>`,
      );
    }
    out.push(
      `<line x1="${x0}" x2="${x0}" y1="${y0}" y2="${yBase}" stroke="#333" stroke-width="1"/>`,
      `<text transform="translate(${x0 - 44} ${y0 + plotH / 2}) rotate(-90)" ` +
        `text-anchor="middle" font-size="12">importance weight (sums to 1)</text>`,
    );
    layers.forEach((layer, li) => {
      const gx = x0 + groupGap + li * (groupW + groupGap);
      layer.runs.forEach((run, ri) => {
        const bx = gx + ri * (barW + barGap);
        const w = panel.pick(run);
        let acc = 0;
        PARTS.forEach((p, k) => {
          const v = w[k] ?? 0;
          if (v <= 0) return;
          const yTop = y(acc + v), h = v * plotH;
          out.push(
            `<rect x="${bx}" y="${f(yTop)}" width="${barW}" height="${f(h)}" ` +
              `fill="${p.color}" stroke="white" stroke-width="0.5">` +
              `<title>${esc(`${layer.name}, batch ${run.batch}: ${p.key} ${v.toFixed(3)}`)}` +
              `</title></rect>`,
          );
          if (h >= 14) {
            out.push(
              `<text x="${bx + barW / 2}" y="${f(yTop + h / 2 + 4)}" text-anchor="middle" ` +
                `font-size="10" fill="white">${v.toFixed(2)}</text>`,
            );
          }
          acc += v;
        });
        out.push(
          `<text x="${bx + barW / 2}" y="${yBase + 15}" text-anchor="middle" font-size="11">` +
            `B=${run.batch}</text>`,
        );
      });
      out.push(
        `<text x="${gx + groupW / 2}" y="${yBase + 34}" text-anchor="middle" font-size="12">${
          esc(layer.name)
        }</text>`,
      );
    });
    out.push(
      `<text x="${x0 + panelPlotW / 2}" y="${yBase + 58}" text-anchor="middle" font-size="12" ` +
        `fill="#555">SN layer, batch size B</text>`,
    );
  });
  if (options.note) {
    out.push(
      `<text x="${width / 2}" y="${height - 12}" text-anchor="middle" font-size="11" ` +
        `fill="#555">${esc(options.note)}</text>`,
    );
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
