/**
 * The mutation probe's list: one-line bugs of the kind a developer could plausibly write, each
 * applied alone by `deno task mutation` (tests/mutation/run.ts) to a copy of the repository. The
 * suite should fail on each. Add mutations with each new feature, and keep each `original` exact
 * and unique in its file: when code moves, the runner reports the mutation as "does not apply"
 * so that it can be updated, never skips it silently. `original` may span lines only to be unique
 * (the change itself stays within one line).
 *
 * @module
 */

/** One mutation: replace the only occurrence of `original` in `file` with `replacement`. */
export interface Mutation {
  /** Short name, for `--only`. */
  readonly id: string;
  /** Path from the repository root. */
  readonly file: string;
  /** Exact text, found exactly once in the file. */
  readonly original: string;
  readonly replacement: string;
  /** The bug it models. */
  readonly models: string;
}

export const MUTATIONS: readonly Mutation[] = [
  // --- The float64 reference backend.
  {
    id: "ref-biased-var",
    file: "backends/reference.ts",
    original: "return [mean, m2 / (count - 1)];",
    replacement: "return [mean, m2 / count];",
    models: "IN variance biased (1/M) instead of torch's unbiased 1/(M-1)",
  },
  {
    id: "ref-ln-merge-no-cross-term",
    file: "backends/reference.ts",
    original: "for (let k = 0; k < count; k++) variance += v(k) + (mu(k) - mean) ** 2;",
    replacement: "for (let k = 0; k < count; k++) variance += v(k);",
    models: "LN/BN variance as the mean of IN variances, without the spread of the IN means",
  },
  {
    id: "ref-1d-bn-biased",
    file: "backends/reference.ts",
    original: 'const denominator = problem.layout === "1d" ? p.count - 1 : p.count;',
    replacement: "const denominator = p.count;",
    models: "SwitchNorm1d BN variance biased (1/N) instead of unbiased",
  },
  {
    id: "ref-eps-outside-sqrt",
    file: "backends/reference.ts",
    original: "const scale = params.weight[j] / Math.sqrt(st.sigma2[r] + problem.eps);",
    replacement: "const scale = params.weight[j] / (Math.sqrt(st.sigma2[r]) + problem.eps);",
    models: "eps added to the standard deviation instead of the variance",
  },
  {
    id: "ref-dvar-missing-s",
    file: "backends/reference.ts",
    original: "gv[r] = -0.5 * s * s * sumDxhXhat;",
    replacement: "gv[r] = -0.5 * s * sumDxhXhat;",
    models: "dL/dvar missing one factor of 1/sqrt(var + eps) (a dropped chain-rule factor)",
  },
  {
    id: "ref-dx-biased-var-derivative",
    file: "backends/reference.ts",
    original: "dx[e] = dxhs(e, r) + gMuIn / m + gVarIn * 2 * (x[e] - inMean[r]) / (m - 1);",
    replacement: "dx[e] = dxhs(e, r) + gMuIn / m + gVarIn * 2 * (x[e] - inMean[r]) / m;",
    models: "dx differentiates the biased variance while the forward uses the unbiased one",
  },
  {
    id: "ref-dx-drops-ln-mean-term",
    file: "backends/reference.ts",
    original: "v1 * (2 / c) * (inMean[r] - lnMean) * gvL[i];",
    replacement: "0;",
    models: "dx drops the chain-rule term of the LN variance through the IN means",
  },
  {
    id: "ref-dgamma-scaled",
    file: "backends/reference.ts",
    original: "dWeight[j] += dy[i] * xhat;",
    replacement: "dWeight[j] += dxh * xhat;",
    models: "dL/dgamma from dy * gamma instead of dy",
  },
  {
    id: "ref-sync-local-batch",
    file: "backends/reference.ts",
    original: "const nBatch = bn?.count ?? n;",
    replacement: "const nBatch = n;",
    models: "SyncSN backward divides by the local batch size instead of the global one",
  },
  // --- The running buffers (shared by the CPU backends and WebGPU's SyncSN path).
  {
    id: "running-momentum-reversed",
    file: "backends/_backend.ts",
    original: "runningMean[c] = m * runningMean[c] + (1 - m) * mean;",
    replacement: "runningMean[c] = (1 - m) * runningMean[c] + m * mean;",
    models: "momentum applied to the batch value instead of the running one (torch's convention)",
  },
  {
    id: "running-batch-average-no-mu2",
    file: "backends/_backend.ts",
    original: "runningVar[c] += mean * mean + variance;",
    replacement: "runningVar[c] += variance;",
    models: "batch average accumulates var_bn without mu_bn^2 (E[x^2] wrong)",
  },
  // --- The layer.
  {
    id: "layer-step-no-version",
    file: "_params.ts",
    original: "throw e;\n    }\n    this.version++;",
    replacement: "throw e;\n    }",
    models: "step() does not mark the parameters changed: stale importance weights and gamma/beta",
  },
  {
    id: "layer-batch-average-count",
    file: "_layer.ts",
    original: "const averaging = training && this.usingBN && !this.usingMovingAverage;",
    replacement: "const averaging = training && this.usingBN && this.usingMovingAverage;",
    models: "batch-average count kept for the wrong option",
  },
  {
    id: "layer-finalize-no-mean2",
    file: "_batch_average.ts",
    original: "runningVar[c] = Math.max(0, runningVar[c] / k - mean * mean);",
    replacement: "runningVar[c] = Math.max(0, runningVar[c] / k);",
    models: "finalizeBatchAverage leaves E[x^2] instead of the variance",
  },
  {
    id: "layer-grads-overwrite",
    file: "_params.ts",
    original: "g.weight[c] += r.dWeight[c];",
    replacement: "g.weight[c] = r.dWeight[c];",
    models: "backward overwrites the gamma gradient instead of accumulating it",
  },
  {
    id: "layer-logit-grads-swapped",
    file: "_params.ts",
    original: "dropZeroWeightDots(r.varDots, mixing.var.weights, below)",
    replacement: "dropZeroWeightDots(r.meanDots, mixing.var.weights, below)",
    models: "variance logit gradients taken from the mean dots",
  },
  {
    id: "sparse-freeze-skips-index-0",
    file: "_sparse.ts",
    original: "if (!(max - min >= 1)) return false;",
    replacement: "if (!(max - min > 1)) return false;",
    models:
      "Sparse SN never fixes a mixing whose weights became exactly one-hot (SSN2d tests max - min >= 1)",
  },
  {
    id: "sparse-frozen-weights-inverted",
    file: "_sparse.ts",
    original: "return { weights: Float64Array.from(logits), vjp: () => new Float64Array(k) };",
    replacement:
      "return { weights: Float64Array.from(logits, (l) => 1 - l), vjp: () => new Float64Array(k) };",
    models: "Sparse SN fixed weights on every normalizer but the chosen one",
  },
  // --- Importance maps (softmax, Sparse SN).
  {
    id: "softmax-no-max-shift",
    file: "_importance.ts",
    original: "const w = Float64Array.from(v, (x) => Math.exp(x - max));",
    replacement: "const w = Float64Array.from(v, (x) => Math.exp(x));",
    models: "softmax without subtracting the max: NaN for logits in the hundreds",
  },
  {
    id: "softmax-vjp-no-dot",
    file: "_importance.ts",
    original: "return w.map((wi, i) => wi * w.reduce((a, wj, j) => a + wj * (g[i] - g[j]), 0));",
    replacement: "return w.map((wi, i) => wi * g[i]);",
    models: "softmax Jacobian without its -w w^T part",
  },
  {
    id: "sparsemax-threshold",
    file: "_importance.ts",
    original: "const t = (cumulative - 1) / (k + 1);",
    replacement: "const t = cumulative / (k + 1);",
    models: "sparsemax threshold without the simplex's sum-to-one constraint",
  },
  {
    id: "sparsestmax-radius-test",
    file: "_importance.ts",
    original: "if (d >= r) return result(w);",
    replacement: "if (d <= r) return result(w);",
    models: "sparsestmax moves points already outside the sphere and keeps those inside",
  },
  {
    id: "sparsestmax-radius-unsquared",
    file: "_importance.ts",
    original:
      "const half = Math.SQRT2 * r * Math.sin(Math.acos(Math.min(1 / (Math.sqrt(6) * r), 1)));",
    replacement: "const half = Math.SQRT2 * r * Math.sin(Math.acos(Math.min(1 / (6 * r), 1)));",
    models:
      "sparsestmax's edge point with 6 for sqrt(6) in the authors' formula (a point not at distance r)",
  },
  // --- The choice of backend.
  {
    id: "auto-crossover-off-by-one",
    file: "backends/select.ts",
    original: "if (call.elements < min) {",
    replacement: "if (call.elements <= min) {",
    models: "auto refuses WebGPU at exactly the crossover size",
  },
  {
    id: "auto-fallback-inverted",
    file: "backends/select.ts",
    original: "if (probe.summary.isFallbackAdapter && !env.webgpuAuto.allowFallbackAdapter) {",
    replacement: "if (probe.summary.isFallbackAdapter && env.webgpuAuto.allowFallbackAdapter) {",
    models: "auto's fallback-adapter rule inverted",
  },
  {
    id: "auto-sync-on-gpu",
    file: "backends/select.ts",
    original: 'if (call.sync) return "SyncSN runs on CPU backends";',
    replacement: 'if (call.sync && call.elements < 0) return "SyncSN runs on CPU backends";',
    models: "auto forgets that SyncSN layers must stay on a CPU backend",
  },
  // --- SyncSN.
  {
    id: "sync-chan-no-cross-term",
    file: "_sync.ts",
    original: "outM2[j] += v[1 + c + j] + delta * delta * nA * nB / total;",
    replacement: "outM2[j] += v[1 + c + j];",
    models: "Chan's merge of BN partials without its cross term",
  },
  {
    id: "sync-mean-unweighted",
    file: "_sync.ts",
    original: "outMean[j] += delta * nB / total;",
    replacement: "outMean[j] += delta / all.length;",
    models: "replicas' BN means averaged without weighting by their batch sizes",
  },
  {
    id: "sync-grad-sums-averaged",
    file: "_sync.ts",
    original: "for (const v of all) for (let i = 0; i < out.length; i++) out[i] += v[i];",
    replacement:
      "for (const v of all) for (let i = 0; i < out.length; i++) out[i] += v[i] / all.length;",
    models: "SyncSN averages the replicas' gradient sums instead of adding them",
  },
  // --- State dicts.
  {
    id: "state-accepts-infinity",
    file: "_state_dict.ts",
    original: 'if (typeof v !== "number" || !Number.isFinite(v)) {',
    replacement: 'if (typeof v !== "number" || Number.isNaN(v)) {',
    models: "loadStateDict accepts infinite values",
  },
  {
    id: "state-no-nested-shapes",
    file: "_state_dict.ts",
    original: "const accepted = [[spec.length], ...spec.shapes];",
    replacement: "const accepted = [[spec.length]];",
    models: "loadStateDict refuses PyTorch's nested shapes ([1, C, 1, 1])",
  },
  {
    id: "state-ragged-accepted",
    file: "_state_dict.ts",
    original: "if (!Array.isArray(v) || v.length !== shape[depth]) {",
    replacement: "if (!Array.isArray(v)) {",
    models: "loadStateDict accepts ragged nested arrays",
  },
  {
    id: "state-extra-key-accepted",
    file: "_state_dict.ts",
    original:
      "k.startsWith(base) ? !Object.hasOwn(specs, k.slice(base.length)) : prefix === undefined",
    replacement: "k.startsWith(base) ? false : prefix === undefined",
    models: "loadStateDict ignores unexpected keys (a misspelt key passes silently)",
  },
  // --- The WASM loader.
  {
    id: "wasm-chunk-scratch-offset",
    file: "backends/_wasm_forward_chunked.ts",
    original:
      "k.sn_normalize_rows_nd(io + 4 * r * m, staging, take, m, regions.scratch + 16 * r, wide);",
    replacement:
      "k.sn_normalize_rows_nd(io + 4 * r * m, staging, take, m, regions.scratch + 8 * r, wide);",
    models: "chunked forward reads the per-row constants with the wrong stride",
  },
  {
    id: "wasm-var-mix-from-mean",
    file: "backends/_wasm_regions.ts",
    original: "f64[h + 4 + i] = params.varMix[i] ?? 0;",
    replacement: "f64[h + 4 + i] = params.meanMix[i] ?? 0;",
    models: "the layer block gets the mean mixing weights in the variance slots",
  },
  {
    id: "wasm-bias-offset",
    file: "backends/_wasm_regions.ts",
    original: "f32.set(params.bias, g + c);",
    replacement: "f32.set(params.bias, g);",
    models: "beta written over gamma in the layer block",
  },
  {
    id: "wasm-sync-1d-biased",
    file: "backends/_wasm_sync.ts",
    original: 'const denominator = problem.layout === "1d" ? merged.count - 1 : merged.count;\n' +
      "  const out = mem.heap.f64;",
    replacement: "const denominator = merged.count;\n  const out = mem.heap.f64;",
    models: "SyncSN on WASM: SwitchNorm1d's merged BN variance biased",
  },
  // --- WebGPU: the dispatch plan and the shaders.
  {
    id: "webgpu-dispatch-rounds-down",
    file: "backends/_webgpu_plan.ts",
    original: "Math.ceil(count / WG),",
    replacement: "Math.floor(count / WG),",
    models: "normalize dispatch rounds the workgroup count down: the tail is never written",
  },
  {
    id: "webgpu-sync-1d-biased",
    file: "backends/_webgpu_sync.ts",
    original: 'const denominator = problem.layout === "1d" ? merged.count - 1 : merged.count;',
    replacement: "const denominator = merged.count;",
    models: "SyncSN on WebGPU: SwitchNorm1d's merged BN variance biased",
  },
  {
    id: "wgsl-eps-outside-sqrt",
    file: "shaders/common.wgsl",
    original: "let scale = gamma / sqrt(select(denom, 1.0, bad));",
    replacement: "let scale = gamma / (sqrt(select(m.variance, 1.0, bad)) + P.eps);",
    models: "WGSL: eps added to the standard deviation instead of the variance",
  },
  {
    id: "wgsl-chan-no-cross-term",
    file: "shaders/common.wgsl",
    original: "return Acc(n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb);",
    replacement: "return Acc(n, a.mean + d * fb, a.m2 + b.m2);",
    models: "WGSL: Chan's merge of Welford summaries without its cross term",
  },
  {
    id: "wgsl-group-var-biased",
    file: "shaders/sn_group_stats.wgsl",
    original: "sumv += m2 / f32(p.count - 1u);",
    replacement: "sumv += m2 / f32(p.count);",
    models: "WGSL: LN/BN groups average biased IN variances",
  },
  {
    id: "wgsl-group-tree-half",
    file: "shaders/sn_group_stats.wgsl",
    original: "for (var s = GROUP_THREADS / 2u; s > 0u; s = s >> 1u) {",
    replacement: "for (var s = GROUP_THREADS / 4u; s > 0u; s = s >> 1u) {",
    models: "WGSL: a reduction tree that skips half of its workgroup",
  },
  {
    id: "wgsl-vec4-straddling-rows",
    file: "shaders/sn_normalize.wgsl",
    original: "if (r0 == last / P.m) {",
    replacement: "if (r0 == e0 / P.m) {",
    models: "WGSL: a vec4 that straddles two rows normalized with the first row's constants",
  },
  {
    id: "wgsl-mix-in-var-biased",
    file: "shaders/sn_mix.wgsl",
    original: "let var_in = p.m2 / max(f32(p.count) - 1.0, 1.0);",
    replacement: "let var_in = p.m2 / max(f32(p.count), 1.0);",
    models: "WGSL: IN variance biased in the mixing pass",
  },
  {
    id: "wgsl-stats-tree-stride",
    file: "shaders/sn_stats.wgsl",
    original: "for (var stride = g >> 1u; stride > 0u; stride = stride >> 1u) {",
    replacement: "for (var stride = g >> 2u; stride > 0u; stride = stride >> 1u) {",
    models: "WGSL: the per-segment reduction starts at a quarter of the threads, losing half",
  },
  // --- Added with call order, saved state, SyncSN failures, checkpoints, range checks, threads.
  {
    id: "threads-call-drops-args",
    file: "backends/_wasm_pool.ts",
    original: "f(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]);",
    replacement: "f(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);",
    models:
      "the calling thread passes fewer job arguments than the workers (a kernel's trailing flags read as 0)",
  },
  {
    id: "queue-no-wait",
    file: "_call_queue.ts",
    original: "const p = after ? after.then(run, run) : run();",
    replacement: "const p = run();",
    models:
      "a layer's calls no longer wait for the ones made before them (overlapping forwards share per-layer state)",
  },
  {
    id: "backward-twice-allowed",
    file: "_layer.ts",
    original: "    if (!retain) {\n      kept.used = true;",
    replacement: "    if (!retain) {\n      kept.used = false;",
    models: "a second backward through one forward adds the gradients again",
  },
  {
    id: "kept-forward-no-detach",
    file: "_saved_forward.ts",
    original: "if (p.weight !== live.weight && p.runningMean !== live.runningMean) return;",
    replacement: "return;",
    models:
      "step()/loadStateDict() between forward and backward change the parameters that backward uses",
  },
  {
    id: "sync-no-failure-report",
    file: "_sync.ts",
    original: "if (sync.started === before) await sync.fail(exchange.length);",
    replacement: "if (sync.started < before) await sync.fail(exchange.length);",
    models: "a replica failing before its gather never tells the others (they wait forever)",
  },
  {
    id: "sync-headers-unchecked",
    file: "_sync.ts",
    original: "    checkHeaders(all);\n",
    replacement: "",
    models:
      "replicas whose layers differ (eps, numFeatures, ...) or that make different calls merge what does not match",
  },
  {
    id: "sync-layer-identity-dropped",
    file: "_sync.ts",
    original: "layersMade.set(group, layer + 1);",
    replacement: "layersMade.set(group, layer);",
    models:
      "two layers sharing a group, called in different orders by the replicas, merge each other's statistics",
  },
  {
    id: "sync-evaluation-not-exchanged",
    file: "_layer.ts",
    original: "if (!training && this.#forwardExchange(false)) await this.layerSync?.confirm();",
    replacement: "",
    models: "a replica in evaluation mode leaves a training replica waiting for its gather",
  },
  {
    id: "batch-average-adds-onto-statistics",
    file: "_batch_average.ts",
    original: "if (statistics === undefined) return undefined;",
    replacement: "return undefined;",
    models:
      "a training forward after finalizeBatchAverage() adds its sums onto the statistics (the next average is meaningless)",
  },
  {
    id: "safetensors-overlap-accepted",
    file: "_safetensors.ts",
    original: "if (e.begin < covered) {",
    replacement: "if (e.begin < covered && e.begin < 0) {",
    models: "readSafetensors accepts overlapping tensors",
  },
  {
    id: "safetensors-bf16-shift",
    file: "_safetensors.ts",
    original: ": (f32Bits.setUint32(0, h << 16, true), f32Bits.getFloat32(0, true));",
    replacement: ": (f32Bits.setUint32(0, h << 8, true), f32Bits.getFloat32(0, true));",
    models: "BF16 widened with the wrong shift",
  },
  {
    id: "eps-subnormal-accepted",
    file: "_validate.ts",
    original: "if (eps > 0 && eps < FLOAT32_MIN_NORMAL) {",
    replacement: "if (eps < 0 && eps < FLOAT32_MIN_NORMAL) {",
    models: "an eps below float32's smallest normal is accepted (GPUs flush it to 0)",
  },
];
