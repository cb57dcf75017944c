/**
 * A progress bar on stderr: redrawn in place on a terminal (at most ~12 times a second), or a
 * line at every quarter when stderr is a file or a pipe, so logs stay short.
 *
 * @module
 */

const encoder = new TextEncoder();

function write(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/** A bar for `total` steps; `update(done, note)` redraws it, `done(note)` ends its line. */
export class ProgressBar {
  readonly #tty = Deno.stderr.isTerminal();
  #lastDraw = 0;
  #lastQuarter = 0;
  readonly #start = performance.now();

  constructor(readonly label: string, readonly total: number, readonly width = 30) {}

  #line(done: number, note: string): string {
    const frac = Math.min(1, done / this.total);
    const full = Math.round(frac * this.width);
    const bar = "#".repeat(full) + "-".repeat(this.width - full);
    const secs = ((performance.now() - this.#start) / 1000).toFixed(1);
    const pct = (100 * frac).toFixed(0).padStart(3);
    return `${this.label} [${bar}] ${pct}% ${secs}s ${note}`;
  }

  update(done: number, note = ""): void {
    if (this.#tty) {
      const now = performance.now();
      if (now - this.#lastDraw < 80 && done < this.total) return;
      this.#lastDraw = now;
      write(`\r${this.#line(done, note)}\x1b[K`);
      return;
    }
    const quarter = Math.floor((4 * done) / this.total);
    if (quarter > this.#lastQuarter && quarter < 4) {
      this.#lastQuarter = quarter;
      write(`${this.#line(done, note)}\n`);
    }
  }

  finish(note = ""): void {
    write(`${this.#tty ? "\r" : ""}${this.#line(this.total, note)}${this.#tty ? "\x1b[K" : ""}\n`);
  }
}
