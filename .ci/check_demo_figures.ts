/**
 * The README quotes the figures the demo prints for its seed (held-out accuracies, SwitchNorm1d's
 * learned weights, the average BN importance, the SwitchNorm2d weights' range). The demo is
 * deterministic (WASM, every call on one thread), but any change to the kernels' last bits changes
 * a training run, and those figures went stale unnoticed (realistic-use helper-85). .ci/run pipes
 * the demo's output here: every figure it printed must appear in README.md as the README words it,
 * or this fails naming each one that does not.
 *
 * Usage: deno run --allow-read .ci/check_demo_figures.ts DEMO_OUTPUT_FILE README.md
 *
 * @module
 */

/** How many figures `demoFigures` reads from a demo run (two accuracies, two pairs of weights, the range, two of the conclusion). */
export const FIGURES = 7;

/** A figure the README must quote: what it is, and the text that must appear in the README. */
export interface Figure {
  readonly what: string;
  readonly text: string;
}

/** The figures of a demo run's output, as the README's "What the demo shows" paragraph words them. */
export function demoFigures(output: string): Figure[] {
  const lines = output.split("\n");
  const figures: Figure[] = [];
  for (const line of lines) {
    const acc = line.match(/^batch +(\d+): .*held-out test acc +([\d.]+%)/);
    if (acc) {
      figures.push({ what: `held-out accuracy at batch ${acc[1]}`, text: `${acc[2]} (${acc[1]})` });
    }
  }
  // The importance table: a layer's name, then a row per batch size (IN columns "-" in SN1d).
  const rows: { layer: string; batch: string; values: string[] }[] = [];
  let layer = "";
  for (const line of lines) {
    const m = line.match(/^(\S.*?SN[123]d)?\s+(\d+)\s+([-\d.\s]+)$/);
    if (!m || (!m[1] && !layer)) continue;
    if (m[1]) layer = m[1];
    rows.push({ layer, batch: m[2], values: m[3].trim().split(/\s+/) });
  }
  const oneD = rows.filter((r) => r.layer.endsWith("SN1d"));
  if (oneD.length === 2) {
    // [-, LN, BN] for the means, then for the variances.
    const [small, large] = oneD;
    figures.push({
      what: `SwitchNorm1d's LN weights at batch ${small.batch}`,
      text: `means ${small.values[1]}, variances ${small.values[4]}`,
    }, {
      what: `SwitchNorm1d's BN weights at batch ${large.batch}`,
      text: `means ${large.values[2]}, variances ${large.values[5]}`,
    });
  }
  const twoD = rows.filter((r) => r.layer.endsWith("SN2d")).flatMap((r) => r.values.map(Number));
  if (twoD.length > 0) {
    const low = Math.min(...twoD).toFixed(3), high = Math.max(...twoD).toFixed(3);
    figures.push({
      what: "the SwitchNorm2d weights' range",
      text: `every weight between ${low} and ${high}`,
    });
  }
  const bn = output.match(
    /: ([\d.]+) at batch (\d+), ([\d.]+) at batch (\d+) \(.*\); lower at batch \d+ in (\d+) of (\d+)/,
  );
  if (bn) {
    figures.push({
      what: "the average BN importance",
      text: `${bn[1]} at batch ${bn[2]} against ${bn[3]} at batch ${bn[4]}`,
    }, {
      what: "the mixings lower at the small batch",
      text: `in ${bn[5]} of the ${bn[6]} mixings`,
    });
  }
  return figures;
}

/** The figures of `output` that `readme` does not quote (line breaks in it read as spaces). */
export function staleFigures(output: string, readme: string): Figure[] {
  const text = readme.replace(/\s+/g, " ");
  return demoFigures(output).filter((f) => !text.includes(f.text));
}

if (import.meta.main) {
  const [outputFile, readmeFile] = Deno.args;
  if (!outputFile || !readmeFile) {
    console.error("usage: check_demo_figures.ts DEMO_OUTPUT_FILE README.md");
    Deno.exit(2);
  }
  const output = Deno.readTextFileSync(outputFile);
  const figures = demoFigures(output);
  // A demo whose output this no longer reads must not pass as "nothing stale".
  if (figures.length !== FIGURES) {
    console.error(`check_demo_figures: read ${figures.length} of the demo's ${FIGURES} figures`);
    Deno.exit(1);
  }
  const stale = staleFigures(output, Deno.readTextFileSync(readmeFile));
  for (const f of stale) {
    console.error(
      `check_demo_figures: README.md does not quote ${f.what} as the demo printed it: "${f.text}"`,
    );
  }
  if (stale.length > 0) Deno.exit(1);
  console.log(
    `check_demo_figures: README.md quotes all ${figures.length} figures the demo printed`,
  );
}
