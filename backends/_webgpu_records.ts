/**
 * How the backward's gradient records (Grad, GRAD_BYTES each: per row, per tile line, per sample
 * and per channel) are bound in windows when they exceed one storage binding, and how the group
 * sums over them add up across windows. Pure arithmetic, used by the plans (_webgpu_plan.ts,
 * _webgpu_backward_plan.ts).
 *
 * Depends on the shared Backend types and the plan's types and constants (_webgpu_plan.ts).
 *
 * @module
 */
import type { NormProblem } from "./_backend.ts";
import type { PlannedDispatch, Window } from "./_webgpu_plan.ts";

/** Bytes of a Grad record (shaders/backward_common.wgsl). */
export const GRAD_BYTES = 64;

/** sn_bwd_groups adds to its output records (shaders/common.wgsl P_ACCUMULATE). */
const F_ACCUMULATE = 64;

/** Adds a dispatch to a plan (the plan's Slots.add). */
export type AddDispatch = (
  kind: PlannedDispatch["kind"],
  workgroups: number,
  fill: (v: DataView) => void,
  window?: Window,
  records?: RecordWindows,
  forward?: undefined,
  span?: number,
) => void;

/**
 * The windows of a backward dispatch's gradient-record buffers (Grad, GRAD_BYTES each), which
 * may exceed one storage binding: each is bound from an aligned record on, and the shader is
 * told that record (Params.elem_base, rec_base or chan_base, or relative member offsets).
 */
export interface RecordWindows {
  /** "nd": the per-row records; "1d": the rows' tile-line records (both: `rows` buffers). */
  readonly rows?: Window;
  /** "1d": the columns' tile-line records; sn_bwd_groups reads its members here when set. */
  readonly chanParts?: Window;
  /** The group records: the ones sn_bwd_groups writes, or the samples' ones a dx step reads. */
  readonly groups?: Window;
  /** The channel records of the group buffer that a dx step reads. */
  readonly chanGroups?: Window;
  /** Layout "nd" in blocks of samples (_webgpu_backward_plan.ts): the forward's row summaries,
   * the block's copy of its group statistics, the segment sums, the dx maps and the block's
   * lists of wide segments and rows. */
  readonly savedRows?: Window;
  readonly savedGroups?: Window;
  readonly segSums?: Window;
  readonly segLo?: Window;
  readonly coef?: Window;
  readonly list?: Window;
}

/** Gradient records (Grad) per binding window: `max` in one binding, windows start at
 * multiples of `align` (the offset alignment), and every window holds at most `per` records,
 * leaving room to align the window of the group records a window of rows writes. */
export interface RecordLimits {
  readonly max: number;
  readonly align: number;
  readonly per: number;
}

/** The record limits of a device's binding size and offset alignment. */
export function recordLimits(limits: { maxBinding: number; offsetAlign: number }): RecordLimits {
  const align = Math.max(1, limits.offsetAlign / GRAD_BYTES);
  const max = Math.floor(limits.maxBinding / GRAD_BYTES);
  return { max, align, per: Math.floor((max - align) / align) * align };
}

/** The window binding records [first, end): from the aligned record `base` on. */
export function recordWindow(
  first: number,
  end: number,
  rec: RecordLimits,
): { base: number; window: Window } {
  const base = Math.floor(first / rec.align) * rec.align;
  return {
    base,
    window: { offset: base * GRAD_BYTES, size: Math.max(1, end - base) * GRAD_BYTES },
  };
}

/** The per-row records ("nd") cut into windows of `rec.per` rows: [firstRow, endRow) each. */
export function rowWindows(rows: number, rec: RecordLimits): [number, number][] {
  const out: [number, number][] = [];
  for (let first = 0; first < rows; first += rec.per) {
    out.push([first, Math.min(first + rec.per, rows)]);
  }
  return out;
}

/** Rows first .. end - 1 for sn_bwd_rows / sn_bwd_coef, whose Grad window starts at `first`. */
export function writeRowRange(v: DataView, first: number, end: number): void {
  v.setUint32(28, first, true);
  v.setUint32(32, end, true);
  v.setUint32(36, first, true);
}

/**
 * One sn_bwd_groups dispatch. `ln` / `bn`: [groups, base, step, stride, count] of its LN and
 * channel groups, the bases relative to the members' window; it writes (or with `accumulate`
 * adds to) the group records outFirst .., bound in a window of their own. `packed`: LN groups
 * alone, `span` threads each (GROUP_SPAN, lnGroupSpan), `groupThreads` / span per workgroup.
 */
export function addGroupSum(
  add: AddDispatch,
  rec: RecordLimits,
  members: RecordWindows,
  ln: readonly number[],
  bn: readonly number[],
  outFirst: number,
  accumulate: boolean,
  fill?: (v: DataView) => void,
  packed?: { span: number; groupThreads: number },
): void {
  const out = recordWindow(outFirst, outFirst + ln[0] + bn[0], rec);
  const perWorkgroup = packed ? packed.groupThreads / packed.span : 1;
  add(
    "bwdGroups",
    Math.ceil((ln[0] + bn[0]) / perWorkgroup),
    (v) => {
      v.setUint32(80, ln[0], true);
      v.setUint32(84, bn[0], true);
      [48, 52, 56, 60].forEach((at, i) => v.setUint32(at, ln[i + 1], true));
      [64, 68, 72, 76].forEach((at, i) => v.setUint32(at, bn[i + 1], true));
      v.setUint32(28, outFirst - out.base, true);
      v.setUint32(104, out.base, true); // the window's first record: global index rec_base + ..
      if (accumulate) v.setUint32(44, v.getUint32(44, true) | F_ACCUMULATE, true);
      fill?.(v);
    },
    undefined,
    { ...members, groups: out.window },
    undefined,
    packed?.span,
  );
}

/**
 * sn_bwd_groups over per-row records bound in windows ("nd"): dispatches zero the N + C group
 * records, then for each window, dispatches add the part of every LN group (a sample's C rows)
 * and channel group (rows c, C + c, ...) that lies in it: the whole samples in the window at
 * once, and the pieces of samples cut by its edges one by one.
 */
export function addWindowedGroupSums(
  add: AddDispatch,
  problem: NormProblem,
  windows: readonly [number, number][],
  rec: RecordLimits,
): void {
  const { n, c } = problem;
  const none = [0, 0, 0, 0, 0];
  const firstRows = { rows: recordWindow(...windows[0], rec).window };
  // Groups with no members sum to zero records.
  for (let g = 0; g < n + c; g += rec.per) {
    const count = Math.min(rec.per, n + c - g);
    addGroupSum(add, rec, firstRows, [count, 0, 0, 1, 0], none, g, false);
  }
  for (const [first, end] of windows) {
    const w = recordWindow(first, end, rec);
    const members = { rows: w.window };
    const at = first - w.base; // the window's first row, within the window
    const piece = (from: number, to: number) => {
      // Rows from .. to - 1 of one sample: one LN member run and to - from channels of one row.
      const s = Math.floor(from / c), local = from - first + at;
      addGroupSum(add, rec, members, [1, local, 0, 1, to - from], none, s, true);
      addGroupSum(add, rec, members, none, [to - from, local, 1, c, 1], n + from - s * c, true);
    };
    const head = Math.floor(first / c), wholeFirst = Math.ceil(first / c);
    const wholeEnd = Math.floor(end / c);
    if (first % c !== 0) piece(first, Math.min(end, (head + 1) * c));
    if (wholeFirst < wholeEnd) {
      const base = wholeFirst * c - first + at, samples = wholeEnd - wholeFirst;
      addGroupSum(add, rec, members, [samples, base, c, 1, c], none, wholeFirst, true);
      addGroupSum(add, rec, members, none, [c, base, 1, c, samples], n, true);
    }
    // The sample the window's end cuts, unless it is the one its start cut.
    if (end % c !== 0 && (first % c === 0 || wholeEnd > head)) piece(wholeEnd * c, end);
  }
}
