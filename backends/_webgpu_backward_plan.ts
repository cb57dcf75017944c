/**
 * How one SN backward is cut into WebGPU dispatches: the reduction over (x, dy), the small
 * combine over N*C, the per-row dx maps and the pass writing dx, with their binding windows,
 * workgroup counts and uniform slots. Pure arithmetic, no GPU objects.
 *
 * Layout "nd" whose statistics exceed one binding runs in blocks of whole samples.
 *
 * Depends on the forward plan's shared pieces (_webgpu_plan.ts: slots, segments, windows,
 * common uniforms), the gradient-record windows (_webgpu_records.ts) and the blocks of samples
 * (_webgpu_row_blocks.ts).
 *
 * @module
 */
import type { NormProblem, RunningUpdate } from "./_backend.ts";
import {
  checkFits,
  checkIndexable,
  checkLoopedWindows,
  GROUP_BYTES,
  groupThreadsFor,
  listBytes,
  lnGroupSpan,
  paddedBytes,
  PARTIAL_BYTES,
  type PlanLimits,
  type PlannedDispatch,
  type PlanParams,
  type RecordWindows,
  segments,
  Slots,
  TILE,
  tileWindows,
  vecWindows,
  WG,
  writeCommon,
  writeGroupMembers,
  writeSegments,
  zeroStdPasses,
} from "./_webgpu_plan.ts";
import {
  addGroupSum,
  addWindowedGroupSums,
  GRAD_BYTES,
  recordLimits,
  recordWindow,
  rowWindows,
  writeRowRange,
} from "./_webgpu_records.ts";
import { rowBlocks } from "./_webgpu_row_blocks.ts";

/** Everything the backend needs to encode one backward. */
export interface BackwardPlan {
  /** Dispatches in order; those of {@linkcode BACKWARD_REDUCTION} come first. */
  readonly dispatches: readonly PlannedDispatch[];
  /** Threads of its group passes' workgroups (groupThreadsFor). */
  readonly groupThreads: number;
  /** The uniform slots, SLOT_BYTES each, in slot order. */
  readonly uniforms: ArrayBuffer;
  /**
   * Bytes of the first reduction's output ("nd": a vec4 (S1, S2, max |dy|, unit) per segment;
   * "1d": a Grad per tile line of a row, N * CT).
   */
  readonly partBytes: number;
  /** "1d": bytes of the Grads per tile line of a column (RT * C); "nd": 0. */
  readonly chanPartBytes: number;
  /** Grad records of the rows ("nd": N*C; "1d": 0, the tile lines are the members). */
  readonly rows: number;
  /** "nd": bytes of the segments' S1 low words (a float each, sn_bwd_reduce.wgsl); "1d": 0. */
  readonly segLoBytes: number;
  /**
   * "nd": records (DOT_SUM_BYTES each) of sn_bwd_rows' partial sums of the pair rows' dot
   * products, one per workgroup of 64 rows; "1d": 0.
   */
  readonly dotRecords: number;
  /** Grad records of the groups: N (LN, per n) then C (per channel). */
  readonly groups: number;
  /** Per-row dx maps ("nd": N*C vec4; "1d": 0). */
  readonly coefRows: number;
  /** Bytes of the list of segments for sn_bwd_wide_reduce (a count, then the segments). */
  readonly wideSegBytes: number;
  /**
   * Bytes of the list of wide rows for sn_bwd_wide_dx ("nd") or of groups with wide sums for
   * sn1d_bwd_wide_dx ("1d"): a count, then the items.
   */
  readonly wideRowBytes: number;
  /** Bytes a tensor buffer of this problem has. */
  readonly tensorBytes: number;
  /** Where each list of both list buffers starts (one per block of samples, "nd"). */
  readonly listOffsets: readonly number[];
  /** "1d": where each list of wide tile lines starts (one per window of x when they exceed a
   * binding); "nd": listOffsets. */
  readonly lineListOffsets: readonly number[];
  /**
   * "nd" in blocks of samples: [from, to, bytes] copies of the forward's group statistics into
   * a buffer of `statGroupsBytes` before the pass (each block's LN groups, then the BN ones).
   */
  readonly statCopies: readonly [number, number, number][];
  readonly statGroupsBytes: number;
  /**
   * Calls with eps 0: bytes of the per-channel words of the passes of std 0 (zeroed before
   * the pass, shaders/sn_bwd_zero_std_fix.wgsl); 0 without those passes.
   */
  readonly zeroStdBytes: number;
}

/** Bytes of a partial sum of dot products (sn_bwd_rows.wgsl DotSum: 16 floats). */
export const DOT_SUM_BYTES = 64;

/** The dispatches before the gradient sums are complete (SyncSN reads them back there). */
export const BACKWARD_REDUCTION: ReadonlySet<PlannedDispatch["kind"]> = new Set([
  "bwdReduce",
  "bwdWideReduce",
  "bwdRows",
  "bwdReduce1d",
  "bwdWideReduce1d",
  "bwdGroups",
  "bwdZeroStd",
  "bwdZeroStd1d",
  "bwdZeroStdFix",
]);

/**
 * Makes the plan of one backward: (1) one pass over (x, dy) for per-row (or per-tile-line)
 * sums, (2) the small combine over N*C (rows, then groups; the gradient sums are complete
 * here), (3) per-row dx maps ("nd") and the pass writing dx. `batch` is the number of samples
 * behind the BN statistics (the global batch under SyncSN).
 */
export function makeBackwardPlan(
  problem: NormProblem,
  params: Omit<PlanParams, "update">,
  limits: PlanLimits,
  batch: number,
): BackwardPlan {
  const { n, c, m, layout } = problem;
  const total = n * c * m;
  checkIndexable(total);
  const groupThreads = groupThreadsFor(problem, limits);
  checkLoopedWindows(problem, limits);
  const slots = new Slots();
  const add = slots.add.bind(slots);
  const rec = recordLimits(limits);
  const groups = n + c;
  if (c + rec.align > rec.max) {
    throw new RangeError(
      `webgpu backend: the per-channel gradient sums need ${c * GRAD_BYTES} bytes, more than ` +
        `one storage binding (${limits.maxBinding} bytes) holds; the tensor has too many ` +
        `channels for this device`,
    );
  }
  const chanGroups = recordWindow(n, n + c, rec);
  // eps 0: the reference's dgamma of channels with rows of std 0 (shaders/zero_std.wgsl), after
  // the group sums: the classes of their terms, then the channel records' dgamma.
  const zeroStd = zeroStdPasses(problem);
  const addZeroStdFix = () => {
    add(
      "bwdZeroStdFix",
      Math.ceil(c / 64),
      (v) => v.setUint32(108, chanGroups.base, true),
      undefined,
      {
        chanGroups: chanGroups.window,
      },
    );
  };
  let partBytes: number, chanPartBytes = 0, rows = 0, coefRows = 0, dotRecords = 0;
  let segLoBytes = 0;
  const wideDx: [
    number,
    number,
    { offset: number; size: number },
    (v: DataView) => void,
    RecordWindows | undefined,
  ][] = [];
  let wideSegments = 0, wideGroupItems = 0;
  let wideSegBytes = 0, wideRowBytes = 0;
  let listOffsets = [0], statGroupsBytes = 0;
  const lineListOffsets = [0];
  const statCopies: [number, number, number][] = [];
  /**
   * Layout "1d" whose LN and BN statistics exceed one binding: a copy, for a window's samples
   * s0 .. s1 - 1, of their LN groups followed by the BN groups, and the slot fields that find
   * them there (Params.row_base, stat_bn_base). Without: the forward's buffer, whole.
   */
  const statsWhole = (n + c) * GROUP_BYTES <= limits.maxBinding;
  const statWindow = (s0: number, s1: number) => {
    if (layout === "nd" || statsWhole) return { rec: {}, fill: (_: DataView) => {} };
    const region = { offset: statGroupsBytes, size: (s1 - s0 + c) * GROUP_BYTES };
    statCopies.push([s0 * GROUP_BYTES, region.offset, (s1 - s0) * GROUP_BYTES]);
    statCopies.push([n * GROUP_BYTES, region.offset + (s1 - s0) * GROUP_BYTES, c * GROUP_BYTES]);
    statGroupsBytes = Math.ceil((region.offset + region.size) / limits.offsetAlign) *
      limits.offsetAlign;
    checkFits(region.size, "the LN/BN statistics of a window", limits);
    return {
      rec: { savedGroups: region },
      fill: (v: DataView) => {
        v.setUint32(152, s0, true);
        v.setUint32(156, n - (s1 - s0), true);
      },
    };
  };
  /** The dx windows of layout "nd" in blocks (else those of vecWindows). */
  let blockDx: { first: number; count: number; fill: (v: DataView) => void; rec: RecordWindows }[] =
    [];
  if (layout === "nd") {
    const seg = segments(problem, limits);
    const chunks = seg.chunks;
    rows = coefRows = n * c;
    // (S1, S2, max |dy|, unit) per segment, and S1's low word (sn_bwd_reduce.wgsl).
    partBytes = seg.count * 16;
    segLoBytes = paddedBytes(seg.count);
    wideSegments = seg.count;
    const statGroups = n + (problem.usingBN ? c : 0);
    const max = limits.maxBinding;
    // Everything but the gradient records bound whole: in range, as ever. Beyond, blocks of
    // whole samples (_webgpu_row_blocks.ts), each with windows of the forward's row summaries,
    // the segment sums and dx maps from its first row on, of the gradient records, and a copy of
    // its LN groups followed by the BN groups (copied before the pass: one binding holds both).
    const single = partBytes <= max && 4 + seg.count * 4 <= max && coefRows * 16 <= max &&
      rows * PARTIAL_BYTES <= max && statGroups * GROUP_BYTES <= max;
    type Block = {
      r0: number;
      r1: number;
      rec?: RecordWindows;
      fill: (v: DataView) => void;
      windows: [number, number, number][];
    };
    let blocks: Block[];
    if (single) {
      blocks = [{ r0: 0, r1: rows, fill: () => {}, windows: seg.windows }];
      listOffsets = [0];
      wideSegBytes = listBytes(seg.count);
      wideRowBytes = listBytes(coefRows);
    } else {
      const bn = problem.usingBN ? c : 0;
      const slack = bn * GROUP_BYTES + limits.offsetAlign + 4 * GRAD_BYTES;
      const rb = rowBlocks(
        n,
        c,
        [PARTIAL_BYTES, chunks * 16, chunks * 4, 16, GRAD_BYTES],
        [GROUP_BYTES],
        m * 4,
        (k) => listBytes(k * chunks),
        Infinity,
        { maxBinding: max - slack, offsetAlign: limits.offsetAlign },
      );
      listOffsets = rb.blocks.map((b) => b.list.offset);
      wideSegBytes = wideRowBytes = rb.listBytes;
      let at = 0;
      blocks = rb.blocks.map((b) => {
        const nb = b.s1 - b.s0;
        const region = { offset: at, size: (nb + bn) * GROUP_BYTES };
        statCopies.push([b.s0 * GROUP_BYTES, at, nb * GROUP_BYTES]);
        if (bn) statCopies.push([n * GROUP_BYTES, at + nb * GROUP_BYTES, bn * GROUP_BYTES]);
        at = Math.ceil((at + region.size) / limits.offsetAlign) * limits.offsetAlign;
        statGroupsBytes = region.offset + region.size;
        const span = (bytes: number) => ({ offset: b.r0 * bytes, size: (b.r1 - b.r0) * bytes });
        return {
          r0: b.r0,
          r1: b.r1,
          rec: {
            savedRows: span(PARTIAL_BYTES),
            savedGroups: region,
            segSums: span(chunks * 16),
            segLo: span(chunks * 4),
            coef: span(16),
            list: b.list,
          },
          fill: (v: DataView) => {
            v.setUint32(152, b.r0, true);
            v.setUint32(156, n - nb, true); // the BN copy follows the block's nb LN groups
          },
          windows: seg.windowsOf(b.r0 * chunks, b.r1 * chunks),
        };
      });
    }
    for (const b of blocks) {
      for (const [first, last, base] of b.windows) {
        const size = paddedBytes(seg.end(last - 1) - base);
        wideDx.push([first, last, { offset: base * 4, size }, (v) => {
          writeSegments(v, seg, first, last, base);
          b.fill(v);
        }, b.rec]);
      }
    }
    for (const kind of ["bwdReduce", "bwdWideReduce"] as const) {
      // bwdWideReduce: the segments of wide rows or of |dy| beyond 2^40 summed again in scaled
      // units (sn_bwd_wide_reduce.wgsl); every other segment costs it four loads.
      for (const b of blocks) {
        for (const [first, last, base] of b.windows) {
          const size = paddedBytes(seg.end(last - 1) - base);
          add(
            kind,
            kind === "bwdReduce"
              ? Math.ceil((last - first) / (WG / seg.threads))
              : Math.min(64, Math.ceil(seg.count / 64)),
            (v) => {
              writeSegments(v, seg, first, last, base);
              b.fill(v);
            },
            { offset: base * 4, size },
            b.rec,
          );
        }
      }
    }
    // Windows of the gradient records: in blocks, the blocks.
    const windows: [number, number][] = single
      ? rowWindows(rows, rec)
      : blocks.map((b) => [b.r0, b.r1]);
    const blockOf = (i: number) => single ? blocks[0] : blocks[i];
    for (const [i, [first, end]] of windows.entries()) {
      const b = blockOf(i);
      // A dot-product partial sum per workgroup (sn_bwd_rows.wgsl), from dot_base on.
      const dotBase = dotRecords;
      dotRecords += Math.ceil((end - first) / 64);
      add(
        "bwdRows",
        Math.ceil((end - first) / 64),
        (v) => {
          v.setUint32(24, seg.chunks, true);
          writeRowRange(v, first, end);
          v.setUint32(292, dotBase, true);
          b.fill(v);
        },
        undefined,
        { ...b.rec, rows: recordWindow(first, end, rec).window },
      );
    }
    // sn_bwd_rows binds its dot sums whole.
    checkFits(dotRecords * DOT_SUM_BYTES, "the dot products' partial sums", limits);
    if (windows.length === 1 && groups <= rec.max) add("bwdGroups", groups, () => {});
    else addWindowedGroupSums(add, problem, windows, rec);
    if (zeroStd) {
      // A thread per segment, in sn_bwd_reduce's windows.
      for (const b of blocks) {
        for (const [first, last, base] of b.windows) {
          const size = paddedBytes(seg.end(last - 1) - base);
          add(
            "bwdZeroStd",
            Math.ceil((last - first) / 64),
            (v) => {
              writeSegments(v, seg, first, last, base);
              b.fill(v);
            },
            { offset: base * 4, size },
            b.rec,
          );
        }
      }
      addZeroStdFix();
    }
    for (const [i, [first, end]] of windows.entries()) {
      const b = blockOf(i);
      const samples = recordWindow(Math.floor(first / c), Math.floor((end - 1) / c) + 1, rec);
      add(
        "bwdCoef",
        Math.ceil((end - first) / 64),
        (v) => {
          // Segments per row: sn_bwd_coef sizes sn_bwd_wide_dx's dispatch by them (list_grid).
          v.setUint32(24, seg.chunks, true);
          writeRowRange(v, first, end);
          v.setUint32(104, samples.base, true);
          v.setUint32(108, chanGroups.base, true);
          b.fill(v);
        },
        undefined,
        {
          ...b.rec,
          rows: recordWindow(first, end, rec).window,
          groups: samples.window,
          chanGroups: chanGroups.window,
        },
      );
    }
    if (!single) {
      blockDx = blocks.flatMap((b) => {
        // The block's elements: r0 * M is a multiple of 4 (rowBlocks aligns r0).
        const firstVec = b.r0 * m / 4;
        return vecWindows(Math.min(b.r1 * m, total) - b.r0 * m, limits).map(([f, count]) => ({
          first: firstVec + f,
          count,
          fill: b.fill,
          rec: { coef: b.rec!.coef },
        }));
      });
    }
  } else {
    const ct = Math.ceil(c / TILE);
    const lnSpan = lnGroupSpan(ct, groupThreads);
    // Lines with a wide element: at most 64 per tile (sn1d_bwd_reduce.wgsl).
    wideSegments = Math.ceil(n / TILE) * ct * 64;
    // In one binding where it fits, else a list per window of x (appended and read there).
    const linesWhole = listBytes(wideSegments) <= limits.maxBinding;
    partBytes = n * ct * GRAD_BYTES;
    chanPartBytes = Math.ceil(n / TILE) * c * GRAD_BYTES;
    const tiles = tileWindows(problem, limits, rec);
    // sn1d_bwd_wide_dx's list: each sample once, each channel once per window (its sums add up
    // over the windows, each of which may list it).
    wideGroupItems = n + c * tiles.length;
    checkFits(listBytes(wideGroupItems), "the list of groups with wide sums", limits);
    for (const [i, [first, last, base]] of tiles.entries()) {
      const r0 = first * TILE, r1 = Math.min(last * TILE, n);
      const lines = recordWindow(r0 * ct, r1 * ct, rec);
      const cols = recordWindow(first * c, last * c, rec);
      const stat = statWindow(r0, r1);
      let lineList: RecordWindows = {};
      if (!linesWhole) {
        const at = i === 0 ? 0 : Math.ceil(wideSegBytes / limits.offsetAlign) * limits.offsetAlign;
        if (i > 0) lineListOffsets.push(at);
        lineList = { list: { offset: at, size: listBytes((last - first) * ct * 64) } };
        wideSegBytes = at + lineList.list!.size;
      }
      add(
        "bwdReduce1d",
        (last - first) * ct,
        (v) => {
          v.setUint32(24, ct, true);
          v.setUint32(28, first, true);
          v.setUint32(32, last, true);
          v.setUint32(36, base, true);
          v.setUint32(104, lines.base, true);
          v.setUint32(108, cols.base, true);
          stat.fill(v);
        },
        { offset: base * 4, size: (r1 * c - base) * 4 },
        {
          rows: lines.window,
          chanParts: cols.window,
          ...stat.rec,
          ...lineList,
        },
      );
      // The lines with a wide element summed again (sn1d_bwd_wide_reduce.wgsl).
      add(
        "bwdWideReduce1d",
        Math.min(64, (last - first) * ct),
        (v) => {
          v.setUint32(24, ct, true);
          v.setUint32(28, first, true);
          v.setUint32(32, last, true);
          v.setUint32(36, base, true);
          v.setUint32(104, lines.base, true);
          v.setUint32(108, cols.base, true);
          stat.fill(v);
        },
        { offset: base * 4, size: (r1 * c - base) * 4 },
        {
          rows: lines.window,
          chanParts: cols.window,
          ...stat.rec,
          ...lineList,
        },
      );
      // The rows' sums lie in this window whole; the columns' add up over the windows.
      const none = [0, 0, 0, 0, 0];
      const lnMembers = [r1 - r0, r0 * ct - lines.base, ct, 1, ct];
      // With the window's statistics (sn_bwd_groups lists the groups that are scaled there).
      const withStats = (w: RecordWindows) => ({ ...w, ...stat.rec });
      // The rows (ct tile-line sums each) on lnSpan threads each, several per workgroup.
      addGroupSum(
        add,
        rec,
        withStats({ rows: lines.window }),
        lnMembers,
        none,
        r0,
        false,
        stat.fill,
        lnSpan < groupThreads ? { span: lnSpan, groupThreads } : undefined,
      );
      const bnMembers = [c, first * c - cols.base, 1, c, last - first];
      addGroupSum(
        add,
        rec,
        withStats({ chanParts: cols.window }),
        none,
        bnMembers,
        n,
        i > 0,
        stat.fill,
      );
    }
  }
  if (zeroStd && layout === "1d") {
    // A thread per element, in sn1d_bwd_dx's windows of x and of the statistics.
    for (const [first, count] of vecWindows(total, limits, rec, c)) {
      const stat = statWindow(
        Math.floor(first * 4 / c),
        Math.min(n, Math.ceil((first + count) * 4 / c)),
      );
      add(
        "bwdZeroStd1d",
        Math.ceil(count * 4 / 64),
        (v) => {
          v.setUint32(36, first * 4, true);
          v.setUint32(40, count, true);
          stat.fill(v);
        },
        { offset: first * 16, size: count * 16 },
        stat.rec,
      );
    }
    addZeroStdFix();
  }
  const vecs = blockDx.length > 0
    ? blockDx.map((w) => [w.first, w.count, w] as const)
    : vecWindows(total, limits, layout === "1d" ? rec : undefined, c).map(([first, count]) =>
      [first, count, undefined] as const
    );
  // bwdWideDx1d: dx of the samples and channels with wide sums written again
  // (sn1d_bwd_wide_dx.wgsl), a workgroup per listed group, at most 64.
  const dxKinds = layout === "nd" ? ["bwdDx"] as const : ["bwdDx1d", "bwdWideDx1d"] as const;
  for (const kind of dxKinds) {
    for (const [first, count, block] of vecs) {
      const s0 = Math.floor(first * 4 / c), s1 = Math.min(n, Math.ceil((first + count) * 4 / c));
      const samples = recordWindow(s0, s1, rec);
      const stat = statWindow(s0, s1);
      add(
        kind,
        kind === "bwdWideDx1d" ? Math.min(64, n + c) : Math.ceil(count / WG),
        (v) => {
          v.setUint32(36, first * 4, true);
          v.setUint32(40, count, true);
          v.setUint32(104, samples.base, true);
          v.setUint32(108, chanGroups.base, true);
          block?.fill(v);
          stat.fill(v);
        },
        { offset: first * 16, size: count * 16 },
        layout === "1d"
          ? { groups: samples.window, chanGroups: chanGroups.window, ...stat.rec }
          : block?.rec,
      );
    }
  }
  // dx of wide rows written again (sn_bwd_wide_dx.wgsl), per segment and window of x.
  for (const w of wideDx) add("bwdWideDx", Math.min(64, n * c), w[3], w[2], w[4]);
  const buffers: [number, string][] = [
    [partBytes, layout === "nd" ? "the per-segment gradient sums" : "the rows' tile-line sums"],
    [chanPartBytes, "the columns' tile-line gradient sums"],
    [rows * GRAD_BYTES, "the per-row gradient sums"],
    [segLoBytes, "the per-segment sums' low words"],
    [dotRecords * DOT_SUM_BYTES, "the dot products' partial sums"],
    [groups * GRAD_BYTES, "the per-sample and per-channel gradient sums"],
  ];
  for (const [bytes, what] of buffers) {
    if (limits.maxBuffer !== undefined && bytes > limits.maxBuffer) {
      throw new RangeError(
        `webgpu backend: ${what} need a buffer of ${bytes} bytes, more than this device's ` +
          `maxBufferSize (${limits.maxBuffer}); the tensor has too many rows for this device`,
      );
    }
  }
  const update: RunningUpdate = { kind: "batchAverage" }; // no running update in a backward
  const uniforms = slots.uniforms((v) => {
    writeCommon(v, problem, { ...params, update });
    writeGroupMembers(v, problem);
    v.setUint32(84, c, true); // every channel has gradient sums, with or without BN
    v.setFloat32(100, batch, true);
  });
  return {
    dispatches: slots.dispatches,
    groupThreads,
    uniforms,
    partBytes,
    chanPartBytes,
    rows,
    segLoBytes,
    dotRecords,
    groups,
    coefRows,
    wideSegBytes: layout === "nd" || wideSegBytes > 0 ? wideSegBytes : listBytes(wideSegments),
    wideRowBytes: layout === "nd" ? wideRowBytes : listBytes(wideGroupItems),
    listOffsets,
    lineListOffsets: layout === "nd" ? listOffsets : lineListOffsets,
    statCopies,
    statGroupsBytes,
    zeroStdBytes: zeroStd ? Math.ceil(c / 4) * 16 : 0,
    tensorBytes: paddedBytes(total),
  };
}
