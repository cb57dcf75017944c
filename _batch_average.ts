/**
 * The paper's batch average (usingMovingAverage: false): how many training batches were added
 * into the running buffers, the refusal to normalize with sums that were not finalized, and the
 * step that turns the sums into inference statistics. Depends only on the parameter store.
 *
 * @module
 */
import type { ParamStore } from "./_params.ts";

/** One layer's batch-average count. */
export class BatchAverage {
  /** Training batches added into the running buffers since the last reset. */
  count = 0;

  constructor(readonly layerName: string) {}

  /** Throws if the running buffers hold sums (an evaluation-mode forward must not use them). */
  checkFinalized(): void {
    if (this.count === 0) return;
    // The buffers hold the batch average's sums: normalizing with them is silently wrong.
    throw new Error(
      `${this.layerName}.forward: evaluation mode, but ${this.count} training batches were ` +
        "accumulated for the batch average and not finalized (the running buffers hold sums, " +
        "not statistics); call finalizeBatchAverage() first, or resetRunningStats() to discard them",
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
    params.changed(true);
  }

  /**
   * running_mean = sum_mean / K, running_var = sum_sq / K - running_mean^2, and K = 0. Throws,
   * changing nothing, when K is 0.
   */
  finalize(params: ParamStore): void {
    const k = this.count;
    if (k === 0) {
      throw new Error(
        `${this.layerName}: no training batches accumulated since resetRunningStats()`,
      );
    }
    const { runningMean, runningVar } = params;
    for (let c = 0; c < runningMean.length; c++) {
      const mean = runningMean[c] / k;
      runningVar[c] = runningVar[c] / k - mean * mean;
      runningMean[c] = mean;
    }
    this.count = 0;
    params.changed(true);
  }
}
