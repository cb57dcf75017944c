/**
 * The paper's batch average (usingMovingAverage: false): how many training batches were added
 * into the running buffers, the refusal to normalize with sums that were not finalized, the new
 * average a training forward begins on finalized or loaded statistics (instead of adding sums onto
 * them), and the step that turns the sums into inference statistics. Depends only on the parameter store.
 *
 * @module
 */
import type { ParamStore } from "./_params.ts";

/** One layer's batch-average count, and whether its running buffers hold sums or statistics. */
export class BatchAverage {
  /** Training batches added into the running buffers since the last reset. */
  count = 0;
  /**
   * What made the running buffers statistics rather than sums (a finalize or a load), or
   * undefined while they are sums (zeros at construction and after a reset are empty sums).
   */
  #statistics?: "finalized by finalizeBatchAverage()" | "loaded by loadStateDict()";

  constructor(readonly layerName: string) {}

  /** Throws if an evaluation-mode forward would normalize with sums (see #checkFinalized). */
  checkForward(training: boolean): void {
    if (!training) this.#checkFinalized();
  }

  /**
   * Called before a batch-average training forward, which adds its batch's sums into the running
   * buffers: if they hold statistics (finalized or loaded), a new average begins from zero, as
   * after resetRunningStats(), rather than adding sums onto statistics (the next finalize would
   * divide that mix by K). Returns what puts the statistics back if the forward fails (a failed
   * call changes nothing), or undefined when the buffers already hold sums.
   */
  beginBatch(params: ParamStore): (() => void) | undefined {
    const statistics = this.#statistics;
    if (statistics === undefined) return undefined;
    const mean = params.runningMean.slice(), variance = params.runningVar.slice();
    this.reset(params);
    return () => {
      params.runningMean.set(mean);
      params.runningVar.set(variance);
      this.#statistics = statistics;
      params.changed(true);
    };
  }

  /** Marks the running buffers as loaded statistics (loadStateDict), ending an average. */
  loaded(): void {
    this.count = 0;
    this.#statistics = "loaded by loadStateDict()";
  }

  /** Throws if the running buffers hold sums (an evaluation-mode forward must not use them). */
  #checkFinalized(): void {
    if (this.count === 0) return;
    // The buffers hold the batch average's sums: normalizing with them is silently wrong.
    throw new Error(
      `${this.layerName}.forward: evaluation mode, but ${batches(this.count)} ` +
        "accumulated for the batch average and not finalized (the running buffers hold sums, " +
        "not statistics); call finalizeBatchAverage() first, or resetRunningStats() to discard them",
    );
  }

  /**
   * Throws if the running buffers hold sums: a state dict's running buffers are statistics, as
   * loadStateDict takes them (a checkpoint of sums evaluated without an error on values K times
   * too large: realistic-use helper-89).
   */
  checkStateDict(): void {
    if (this.count === 0) return;
    throw new Error(
      `${this.layerName}.stateDict: ${batches(this.count)} accumulated for the ` +
        "batch average and not finalized (the running buffers hold sums, not statistics, and " +
        "loadStateDict would take them as statistics); call finalizeBatchAverage() first, or " +
        "resetRunningStats() to discard them",
    );
  }

  /**
   * Throws if a load of one running buffer alone would end an average in progress: the other
   * would stay a sum beside a loaded statistic (a running_var of 302, three batches' sums, then
   * saved and evaluated as a variance; attack helper-90).
   */
  checkLoadOne(buffer: string): void {
    if (this.count === 0) return;
    throw new Error(
      `${this.layerName}.loadStateDict: loads ${buffer} alone, but ${batches(this.count)} ` +
        "accumulated for the batch average and not finalized (the running buffers hold sums, " +
        "and the other one would stay a sum beside a statistic); load both running buffers, or " +
        "call finalizeBatchAverage() or resetRunningStats() first",
    );
  }

  /** Throws unless a layer with these options has a batch average to finalize. */
  checkOptions(usingBN: boolean, usingMovingAverage: boolean): void {
    const name = this.layerName;
    if (!usingBN) throw new Error(`${name}: no running buffers (usingBN is false)`);
    if (usingMovingAverage) {
      throw new Error(`${name}: finalizeBatchAverage needs usingMovingAverage: false`);
    }
  }

  /** Zeroes the running buffers and the count: the first step of a batch average. */
  reset(params: ParamStore): void {
    params.runningMean.fill(0);
    params.runningVar.fill(0);
    this.count = 0;
    this.#statistics = undefined;
    params.changed(true);
  }

  /**
   * running_mean = sum_mean / K, running_var = max(0, sum_sq / K - running_mean^2), and K = 0.
   * Throws, changing nothing, when K is 0.
   */
  finalize(params: ParamStore): void {
    const k = this.count;
    if (k === 0 && this.#statistics !== undefined) {
      throw new Error(
        `${this.layerName}.finalizeBatchAverage: the running buffers already hold statistics ` +
          `(${this.#statistics}), and no training batch was accumulated since; nothing changed`,
      );
    }
    if (k === 0) {
      throw new Error(
        `${this.layerName}: no training batches accumulated since resetRunningStats()`,
      );
    }
    const { runningMean, runningVar } = params;
    for (let c = 0; c < runningMean.length; c++) {
      const mean = runningMean[c] / k;
      // The difference cancels where |mean| >> std, and the float32 sums' rounding can leave it
      // below 0 (a constant channel at 5e5: -1024); a variance is not negative, and a negative
      // running_var would make every evaluation NaN and the state dict refuse to load: 0 then.
      // (Math.max keeps NaN.)
      runningVar[c] = Math.max(0, runningVar[c] / k - mean * mean);
      runningMean[c] = mean;
    }
    this.count = 0;
    this.#statistics = "finalized by finalizeBatchAverage()";
    params.changed(true);
  }
}

/** "1 training batch was", "2 training batches were". */
function batches(count: number): string {
  return count === 1 ? "1 training batch was" : `${count} training batches were`;
}
