/**
 * Blocks of whole samples for the WebGPU passes when their statistics exceed one storage
 * binding. Layout "nd" (forward and backward: the segment and row summaries, the rows' affine or
 * dx maps, the lists of wide rows, the gradient records): each block's records are bound as
 * windows of their buffers, every window starting at the block's first row, which is aligned so
 * that each of those windows, and the block's first element of x, start at a multiple of the
 * offset alignment. Layout "1d" (forward): blocks of row tiles of 32 samples, each with its tile
 * summaries laid out on their own. Pure arithmetic, used by the plans (_webgpu_plan.ts, which
 * sums the blocks' BN statistics in two levels, and _webgpu_backward_plan.ts).
 *
 * Depends on nothing.
 *
 * @module
 */

/** A range of a buffer bound as one storage binding (the plan's Window). */
interface Range {
  readonly offset: number;
  readonly size: number;
}

/** One block: samples s0 .. s1 - 1, rows r0 .. r1 - 1 (r = n * C + c). */
export interface RowBlock {
  readonly s0: number;
  readonly s1: number;
  readonly r0: number;
  readonly r1: number;
  /** The block's list of wide rows, in each list buffer (a count, then the rows). */
  readonly list: Range;
}

/** The blocks of a problem, and whether there is more than one. */
export interface RowBlocks {
  readonly blocks: readonly RowBlock[];
  /** One block holding every row: its records are bound whole, as without blocks. */
  readonly single: boolean;
  /** Bytes of each list buffer: the blocks' lists one after the other, aligned. */
  readonly listBytes: number;
}

/** The greatest common divisor of two non-negative integers. */
export function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Cuts the n samples of c rows into blocks whose per-row records fit one binding. `perRow`:
 * bytes per row of each per-row record buffer; `perSample`: bytes per sample of each per-sample
 * record buffer (whose windows start at the block's first sample); `listBytes(k)`: bytes of a
 * list of k rows; `elementBytes`: bytes of x per row (M floats), which aligns the blocks'
 * windows of x too; `wholeBytes`: bytes of other buffers that one block binds whole.
 * Throws a RangeError when the smallest aligned block does not fit.
 */
export function rowBlocks(
  n: number,
  c: number,
  perRow: readonly number[],
  perSample: readonly number[],
  elementBytes: number,
  listBytes: (rows: number) => number,
  wholeBytes: number,
  limits: { readonly maxBinding: number; readonly offsetAlign: number },
): RowBlocks {
  const { maxBinding: max, offsetAlign: align } = limits;
  const rows = n * c;
  const fits = (k: number) => perRow.every((b) => k * b <= max) && listBytes(k) <= max;
  if (fits(rows) && wholeBytes <= max) {
    return {
      blocks: [{ s0: 0, s1: n, r0: 0, r1: rows, list: { offset: 0, size: listBytes(rows) } }],
      single: true,
      listBytes: listBytes(rows),
    };
  }
  // A block's first row r0 makes r0 * b a multiple of `align` for every stride b.
  let rowAlign = 1;
  for (const b of [...perRow, elementBytes, 4]) {
    const a = align / gcd(b, align);
    rowAlign = rowAlign * a / gcd(rowAlign, a);
  }
  let sampleAlign = rowAlign / gcd(c, rowAlign);
  for (const b of perSample) {
    const a = align / gcd(b, align);
    sampleAlign = sampleAlign * a / gcd(sampleAlign, a);
  }
  let maxRows = Math.min(...perRow.map((b) => Math.floor(max / b)));
  while (maxRows > 0 && listBytes(maxRows) > max) maxRows--;
  const per = Math.floor(Math.floor(maxRows / c) / sampleAlign) * sampleAlign;
  if (per === 0) {
    const bytes = perRow.reduce((a, b) => Math.max(a, b));
    throw new RangeError(
      `webgpu backend: the per-row statistics of ${sampleAlign} samples (${sampleAlign * c} ` +
        `rows of up to ${bytes} bytes) do not fit a storage binding of ${max} bytes; the ` +
        `tensor has too many channels for this device`,
    );
  }
  const blocks: RowBlock[] = [];
  let offset = 0;
  for (let s0 = 0; s0 < n; s0 += per) {
    const s1 = Math.min(n, s0 + per);
    const size = listBytes((s1 - s0) * c);
    blocks.push({ s0, s1, r0: s0 * c, r1: s1 * c, list: { offset, size } });
    offset = Math.ceil((offset + size) / align) * align;
  }
  const last = blocks[blocks.length - 1].list;
  return { blocks, single: false, listBytes: last.offset + last.size };
}

/** One block of layout "1d": row tiles rt0 .. rt1 - 1, samples n0 .. n1 - 1. */
export interface TileBlock {
  readonly rt0: number;
  readonly rt1: number;
  readonly n0: number;
  readonly n1: number;
  /** Its tile summaries: CT per sample (ct-major), then C per row tile. */
  readonly parts: Range;
  /** Its list of wide tile lines (sn1d_stats). */
  readonly lines: Range;
  /** Its list of scaled LN groups (sn_group_stats). */
  readonly groupList: Range;
}

/** The blocks of layout "1d", and whether there is more than one. */
export interface TileBlocks {
  readonly blocks: readonly TileBlock[];
  readonly single: boolean;
  /** The list of scaled BN groups, before the blocks' lists in its buffer. */
  readonly chanList: Range;
  /** Bytes of the summaries' buffer (each block's start aligned) and of the list buffers: wide
   * tile lines, and scaled groups. */
  readonly partsBytes: number;
  readonly linesBytes: number;
  readonly groupListBytes: number;
}

/**
 * Cuts the row tiles (32 samples) of a layout "1d" problem [n, c] into blocks whose tile
 * summaries (`partBytes` each), LN groups (`groupBytes` each) and lists fit one binding, each
 * block's windows aligned. Throws a RangeError when one aligned block does not fit.
 */
export function tileBlocks(
  n: number,
  c: number,
  partBytes: number,
  groupBytes: number,
  listBytes: (items: number) => number,
  limits: { readonly maxBinding: number; readonly offsetAlign: number },
): TileBlocks {
  const { maxBinding: max, offsetAlign: align } = limits;
  const tile = 32, rt = Math.ceil(n / tile), ct = Math.ceil(c / tile);
  const partsOf = (samples: number, tiles: number) => (ct * samples + tiles * c) * partBytes;
  const fits = (samples: number, tiles: number) =>
    partsOf(samples, tiles) <= max && listBytes(tiles * ct * 64) <= max &&
    samples * groupBytes <= max && listBytes(samples) <= max;
  const whole = (n + c) * groupBytes <= max && listBytes(n + c) <= max;
  if (fits(n, rt) && whole) {
    const region = (bytes: number) => ({ offset: 0, size: bytes });
    const lines = listBytes(rt * ct * 64), groups = listBytes(n + c);
    return {
      blocks: [{
        rt0: 0,
        rt1: rt,
        n0: 0,
        n1: n,
        parts: region(partsOf(n, rt)),
        lines: region(lines),
        groupList: region(groups),
      }],
      single: true,
      chanList: region(groups),
      partsBytes: partsOf(n, rt),
      linesBytes: lines,
      groupListBytes: groups,
    };
  }
  // A block's first tile t0 makes its LN groups and its first element of x start at multiples of
  // `align` (its summaries start aligned as laid out, each block's after the last one's).
  let tileAlign = 1;
  for (const b of [tile * groupBytes, tile * c * 4]) {
    const a = align / gcd(b, align);
    tileAlign = tileAlign * a / gcd(tileAlign, a);
  }
  // The most aligned tiles that fit (fits is monotone: binary search).
  let lo = 0, hi = Math.ceil(rt / tileAlign);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2), t = mid * tileAlign;
    if (fits(t * tile, t)) lo = mid;
    else hi = mid - 1;
  }
  const per = lo * tileAlign;
  if (per === 0) {
    throw new RangeError(
      `webgpu backend: the statistics of ${tileAlign * tile} samples (${tileAlign * tile * ct} ` +
        `row and ${tileAlign * c} column summaries of ${partBytes} bytes) do not fit a storage ` +
        `binding of ${max} bytes; the tensor has too many features for this device`,
    );
  }
  const up = (v: number) => Math.ceil(v / align) * align;
  const chanList = { offset: 0, size: listBytes(c) };
  let partsAt = 0, linesAt = 0, groupsAt = up(chanList.size);
  const blocks: TileBlock[] = [];
  for (let rt0 = 0; rt0 < rt; rt0 += per) {
    const rt1 = Math.min(rt, rt0 + per), n0 = rt0 * tile, n1 = Math.min(n, rt1 * tile);
    const parts = { offset: partsAt, size: partsOf(n1 - n0, rt1 - rt0) };
    const lines = { offset: linesAt, size: listBytes((rt1 - rt0) * ct * 64) };
    const groupList = { offset: groupsAt, size: listBytes(n1 - n0) };
    blocks.push({ rt0, rt1, n0, n1, parts, lines, groupList });
    partsAt = up(partsAt + parts.size);
    linesAt = up(linesAt + lines.size);
    groupsAt = up(groupsAt + groupList.size);
  }
  const last = blocks[blocks.length - 1];
  return {
    blocks,
    single: false,
    chanList,
    partsBytes: last.parts.offset + last.parts.size,
    linesBytes: last.lines.offset + last.lines.size,
    groupListBytes: last.groupList.offset + last.groupList.size,
  };
}
