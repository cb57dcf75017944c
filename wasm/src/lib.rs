//! Switchable Normalization kernels for wasm32 with 128-bit SIMD.
//!
//! The module exports plain C-ABI functions over pointers into its own linear memory; the
//! TypeScript loader (backends/wasm.ts) owns that memory (everything from `__heap_base` up) and
//! passes every buffer in. The kernels keep no state between calls and allocate nothing. Memory
//! layouts of the layer block and the statistics area are in `layout`.
//!
//! A forward is two calls, `sn_stats_*` (the one statistics pass over x) then `sn_normalize_*`
//! (the one normalize pass). The statistics area stays filled after the forward, which is what a
//! backward kernel needs, and a caller may replace its BN part in between (SyncSN). A backward is
//! two calls on that statistics area, `sn_backward_reduce_*` (one pass over x and dy, then every
//! gradient sum) and `sn_backward_dx_*` (one pass writing dx); between them a caller may replace
//! the packed sums by their totals over replicas (SyncSN).
//!
//! Build: `deno task build:wasm` (wasm/build.sh).

#![no_std]

mod exact;
mod layout;
mod moments;
mod nd;
mod nd_grad;
mod nd_grad_dx;
mod nd_grad_means;
mod nd_grad_refine;
mod nd_normalize;
mod oned;
mod oned_grad;
mod roofline;
mod simd;
mod simd_grad;
mod wide;

use layout::{
    Layer, Stats, Sums, LAYOUT_1D, LAYOUT_ND, MODE_BN_PARTIALS, MODE_REFINE_MEANS, MODE_TRAINING,
    MODE_USING_BN,
};

/// Changes whenever an export's signature or a memory layout changes; the loader checks it.
const ABI_VERSION: u32 = 9;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

/// The ABI version the loader must have been written for.
#[no_mangle]
pub extern "C" fn sn_abi_version() -> u32 {
    ABI_VERSION
}

/// Bytes of the layer block for `c` channels (`layout`).
#[no_mangle]
pub extern "C" fn sn_layer_bytes(c: u32) -> u32 {
    layout::layer_bytes(c as usize) as u32
}

/// Number of f64 values in the statistics area of a forward (`layout`: 0 nd, 1 1d).
#[no_mangle]
pub extern "C" fn sn_stats_len(layout: u32, n: u32, c: u32) -> u32 {
    layout::stats_len(layout, n as usize, c as usize) as u32
}

/// Bytes of transient scratch (16-byte aligned) a forward needs.
#[no_mangle]
pub extern "C" fn sn_scratch_bytes(layout: u32, n: u32, c: u32) -> u32 {
    layout::scratch_bytes(layout, n as usize, c as usize) as u32
}

/// Number of f64 values of the backward work area (`layout`).
#[no_mangle]
pub extern "C" fn sn_work_len(layout: u32, n: u32, c: u32) -> u32 {
    layout::work_len(layout, n as usize, c as usize) as u32
}

/// f64 index of the packed gradient sums in the backward work area (`layout`).
#[no_mangle]
pub extern "C" fn sn_sums_at(layout: u32, n: u32, c: u32) -> u32 {
    layout::sums_at(layout, n as usize, c as usize) as u32
}

/// Number of packed gradient sums, 4C + 2K, and the mean dots' offset (`layout`; `mode` bit 1:
/// usingBN).
#[no_mangle]
pub extern "C" fn sn_sums_len(layout: u32, mode: u32, c: u32) -> u32 {
    layout::sums_len(layout, mode & MODE_USING_BN != 0, c as usize) as u32
}

/// The work area's sums, split.
unsafe fn sums<'a>(work: *mut f64, layout: u32, mode: u32, n: usize, c: usize) -> Sums<'a> {
    let at = layout::sums_at(layout, n, c);
    Sums::split(work.add(at), layout, mode & MODE_USING_BN != 0, c)
}

/// Statistics pass of SwitchNorm2d/3d on x viewed as [n, c, m] (`nd::statistics`): fills
/// mu_in, var_in, mu_ln, var_ln and, with usingBN, mu_bn, var_bn (batch in training, running in
/// evaluation). `mode`: bit 0 training, bit 1 usingBN, bit 2 `MODE_BN_PARTIALS`, bit 3
/// `MODE_REFINE_MEANS`.
///
/// # Safety
/// Pointers as in `layout` and `nd::statistics`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_stats_nd(
    x: *const f32,
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    nd::statistics(x, n, c, m, mode, &layer, Stats::split(stats, LAYOUT_ND, n, c));
}

/// Normalize pass of SwitchNorm2d/3d (`nd_normalize::normalize`): mixes the statistics area into
/// mu, var per (n,c) and writes y. `y` may equal `x` (in place). `scratch`: `sn_scratch_bytes`
/// bytes.
///
/// # Safety
/// Pointers as in `layout` and `nd_normalize::normalize`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_normalize_nd(
    x: *const f32,
    y: *mut f32,
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    scratch: *mut u8,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    nd_normalize::normalize(
        x,
        y,
        n,
        c,
        m,
        mode,
        &layer,
        st,
        scratch as *mut core::arch::wasm32::v128,
    );
}

/// Part of `sn_stats_nd` for a Float32Array staged chunk by chunk: mu_in, var_in of the `rows`
/// rows row0.. of the tensor [n, c, m], whose data is at `x` (the chunk, not the tensor). After
/// every row has been measured, `sn_stats_derive_nd` finishes the statistics pass. `mode` as
/// for `sn_stats_nd` (with `MODE_REFINE_MEANS` rows of a mean near 0 are summed again,
/// `nd::row_moments`).
///
/// # Safety
/// `x` valid for rows * m floats, row0 + rows <= n * c; `stats` as in `layout`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_stats_rows_nd(
    x: *const f32,
    row0: u32,
    rows: u32,
    n: u32,
    c: u32,
    m: u32,
    stats: *mut f64,
    mode: u32,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let at = row0 as usize..row0 as usize + rows as usize;
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let refine = mode & MODE_REFINE_MEANS != 0;
    let (mu_in, var_in) = (&mut st.mu_in[at.clone()], &mut st.var_in[at.clone()]);
    nd::row_moments(x, m, mu_in, var_in, &mut st.mu[at], refine);
}

/// The rest of `sn_stats_nd` after `sn_stats_rows_nd` covered every row (`nd::derive`); `x` is
/// the whole tensor [n, c, m] (with `MODE_REFINE_MEANS` some rows may be summed again).
///
/// # Safety
/// Pointers as in `layout`; the caller owns and sizes every buffer.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_stats_derive_nd(
    x: *const f32,
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    nd::derive(x, n, c, m, mode, &layer, Stats::split(stats, LAYOUT_ND, n, c));
}

/// Part of `sn_normalize_nd` for chunked staging: the per-row constants into `scratch`
/// (`nd_normalize::constants`), then `sn_normalize_rows_nd` per chunk. Returns 1 if some row is
/// wide (`wide`), for `sn_normalize_rows_nd`, else 0.
///
/// # Safety
/// Pointers as in `layout`; the caller owns and sizes every buffer.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_constants_nd(
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    scratch: *mut u8,
) -> u32 {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let scratch = scratch as *mut core::arch::wasm32::v128;
    nd_normalize::constants(n, c, m, mode, &layer, st, scratch) as u32
}

/// The normalize sweep over `rows` rows of m floats at `x` into `y` (may equal x), with the
/// constants at `consts` (scratch + 16 * row0 for rows row0..); `wide` as `sn_constants_nd`
/// returned.
///
/// # Safety
/// `x`, `y` valid for rows * m floats, the same or not overlapping; `consts` for 16 * rows bytes.
#[no_mangle]
pub unsafe extern "C" fn sn_normalize_rows_nd(
    x: *const f32,
    y: *mut f32,
    rows: u32,
    m: u32,
    consts: *const u8,
    wide: u32,
) {
    let consts = consts as *const core::arch::wasm32::v128;
    nd_normalize::sweep(x, y, rows as usize, m as usize, consts, wide != 0);
}

/// Statistics pass of SwitchNorm1d on x of [n, c] (`oned::statistics`): fills mu_ln, var_ln and,
/// with usingBN, mu_bn, var_bn. `mode`: bit 0 training, bit 1 usingBN.
///
/// # Safety
/// Pointers as in `layout` and `oned::statistics`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_stats_1d(
    x: *const f32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    scratch: *mut u8,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    oned::statistics(x, n, c, mode, &layer, st, scratch as *mut f32);
}

/// Normalize pass of SwitchNorm1d (`oned::normalize`). `y` may equal `x` (in place).
///
/// # Safety
/// Pointers as in `layout` and `oned::normalize`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_normalize_1d(
    x: *const f32,
    y: *mut f32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    oned::normalize(x, y, n, c, mode, &layer, Stats::split(stats, LAYOUT_1D, n, c));
}

/// Backward reduction of SwitchNorm2d/3d (`nd_grad::reduce`): one pass over x and dy of
/// [n, c, m] with the statistics area of this layer's forward; fills the work area (per-row
/// gradients and the packed sums).
///
/// # Safety
/// Pointers as in `layout` and `nd_grad::reduce`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_backward_reduce_nd(
    x: *const f32,
    dy: *const f32,
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let sums = sums(work, LAYOUT_ND, mode, n, c);
    if m > nd_grad::CHUNK {
        reduce_long_rows(x, dy, n, c, m, mode, &layer, st, work, sums);
    } else {
        nd_grad::reduce::<false>(x, dy, n, c, m, mode, &layer, st, work, sums);
    }
    after_combine(x, dy, n, c, m, mode, &layer, stats, work);
}

/// `nd_grad::reduce` for rows longer than `nd_grad::CHUNK`, kept out of line: inlined beside the
/// short rows' instantiation in `sn_backward_reduce_nd`, it made that one ~15% slower at
/// [64, 512, 7, 7] (rows of 49 floats).
///
/// # Safety
/// As `nd_grad::reduce`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn reduce_long_rows(
    x: *const f32,
    dy: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    st: Stats,
    work: *mut f64,
    sums: Sums,
) {
    nd_grad::reduce::<true>(x, dy, n, c, m, mode, layer, st, work, sums);
}

/// After an nd reduction (`nd_grad::combine`), outside it (its code stays as it was):
/// `nd_grad_refine::refine_cancelled`, then, outside SyncSN, `nd_grad_means::refine_dots`.
///
/// # Safety
/// As `sn_backward_combine_nd`, after the combine.
#[allow(clippy::too_many_arguments)]
unsafe fn after_combine(
    x: *const f32,
    dy: *const f32,
    n: usize,
    c: usize,
    m: usize,
    mode: u32,
    layer: &Layer,
    stats: *mut f64,
    work: *mut f64,
) {
    {
        let st = Stats::split(stats, LAYOUT_ND, n, c);
        let mut sums = sums(work, LAYOUT_ND, mode, n, c);
        nd_grad_refine::refine_cancelled(x, dy, n, c, m, mode, layer, &st, work, &mut sums);
    }
    // Under SyncSN (the BN partials) the BN statistics are the replicas' together: not here.
    if mode & MODE_USING_BN != 0 && mode & MODE_TRAINING != 0 && mode & MODE_BN_PARTIALS != 0 {
        return;
    }
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let mut sums = sums(work, LAYOUT_ND, mode, n, c);
    let w = nd_grad::Work::split(work, n, c);
    let pairs = w.pairs.as_ptr();
    let (gm_ln, gv_ln) = (&*w.gm_ln, &*w.gv_ln);
    let room = work.add(layout::refine_at(n, c));
    let aux = w.aux.as_mut_ptr();
    let g_sq = &*w.g_sq;
    nd_grad_means::refine_dots(
        x, n, c, m, mode, layer, &st, pairs, gm_ln, gv_ln, &mut sums, room, aux, g_sq,
    );
    // A training batch of one sample (outside SyncSN, which returned above): each channel's BN
    // group is its one row, whose BN mean and variance are its IN ones exactly (as the reference
    // has them), so the BN dots are the IN dots. Summed apart (the IN dots two channels per
    // f64x2, the BN dots channel by channel, and again apart in `refine_dots`) they rounded
    // apart, and their difference, 0 in the reference, came out 2^-53 of their terms
    // gm (mu_in - K), which a small weight on a far term makes far larger than gm (mu_in - mu):
    // rows ~1e-15 beside one of ~1e30 (K their LN mean, ~1e29) under an LN mean weight of e^-87
    // had `mean_weight`'s IN and BN gradients -+4.3e12 where the reference has 4.3e-10 and
    // 3.2e-10 (tiny_weight_far_variance_sweep seed 449; tests/tiny_weight_far_variance_test.ts).
    // Two copies per call.
    if n == 1 && mode & MODE_USING_BN != 0 && mode & MODE_TRAINING != 0 {
        sums.mean_dots[2] = sums.mean_dots[0];
        sums.var_dots[2] = sums.var_dots[0];
    }
}

/// Backward dx pass of SwitchNorm2d/3d (`nd_grad_dx::dx`), after `sn_backward_reduce_nd` on the
/// same work area; `count` is the batch size behind the BN statistics (the global one under
/// SyncSN). `dx` may equal `dy` (in place).
///
/// # Safety
/// Pointers as in `layout` and `nd_grad_dx::dx`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_backward_dx_nd(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
    count: f64,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let sums = sums(work, LAYOUT_ND, mode, n, c);
    nd_grad_dx::dx(x, dy, dx, n, c, m, mode, &layer, st, work, sums, count);
}

/// Part of `sn_backward_reduce_nd` for a range of rows (a thread's share): the sweep over the
/// `rows` rows row0.. whose x and dy are at `x`, `dy` (the range's, not the tensor's). After every
/// row was swept, `sn_backward_combine_nd` finishes the reduction.
///
/// # Safety
/// `x`, `dy` valid for rows * m floats, row0 + rows <= n * c; `stats`, `work` as in `layout`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_backward_rows_nd(
    x: *const f32,
    dy: *const f32,
    row0: u32,
    rows: u32,
    n: u32,
    c: u32,
    m: u32,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c, row0) = (n as usize, c as usize, row0 as usize);
    let (st, m, rows) = (Stats::split(stats, LAYOUT_ND, n, c), m as usize, rows as usize);
    // Centred as nd_grad::reduce centres them.
    let mu = nd_grad::centres(&st).add(row0);
    let pairs = (work as *mut core::arch::wasm32::v128).add(row0);
    if m > nd_grad::CHUNK {
        let var_in = st.var_in.as_ptr().add(row0);
        nd_grad::long_row_sums(x, dy, m, (mu, var_in), pairs, rows);
    } else {
        nd_grad::reduce_rows(x, dy, m, mu, pairs, rows);
    }
}

/// The rest of `sn_backward_reduce_nd` after `sn_backward_rows_nd` covered every row (x and dy:
/// the whole tensor's, for rows whose sums must be taken again in f64).
///
/// # Safety
/// Pointers as in `layout`; the caller owns and sizes every buffer.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_backward_combine_nd(
    x: *const f32,
    dy: *const f32,
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let sums = sums(work, LAYOUT_ND, mode, n, c);
    // The threads' sweeps did not report whether their sums were finite: each row is checked.
    nd_grad::combine(x, dy, n, c, m, mode, &layer, st, work, sums, false);
    after_combine(x, dy, n, c, m, mode, &layer, stats, work);
}

/// Part of `sn_backward_dx_nd` for split sweeps: the per-row constants into the work area, then
/// `sn_backward_dx_rows_nd` per range of rows. Returns 1 when some row is wide (its sweep must
/// be told so), else 0.
///
/// # Safety
/// Pointers as in `layout`; the caller owns and sizes every buffer.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_backward_constants_nd(
    n: u32,
    c: u32,
    m: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
    count: f64,
) -> u32 {
    let (n, c, m) = (n as usize, c as usize, m as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_ND, n, c);
    let sums = sums(work, LAYOUT_ND, mode, n, c);
    nd_grad_dx::dx_constants(n, c, m, mode, &layer, st, work, sums, count) as u32
}

/// The dx sweep over the `rows` rows row0.. whose x, dy, dx are at `x`, `dy`, `dx` (the
/// range's), with the constants `sn_backward_constants_nd` left in `work`; `wide` is what that
/// call returned (then each row checks its mark in the work area, and a wide one is swept in f64).
///
/// # Safety
/// `x`, `dy`, `dx` valid for rows * m floats (`dx` may equal `dy` or `x`); `work`, `layer` and
/// `stats` as in `layout`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_backward_dx_rows_nd(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    row0: u32,
    rows: u32,
    m: u32,
    work: *mut f64,
    n: u32,
    c: u32,
    _layer: *const u8,
    stats: *mut f64,
    wide: u32,
) {
    let row0 = row0 as usize;
    let abk = (work as *const core::arch::wasm32::v128).add(row0);
    if wide != 0 {
        let (n, c) = (n as usize, c as usize);
        let w = nd_grad::Work::split(work, n, c);
        let mu_in = Stats::split(stats, LAYOUT_ND, n, c).mu_in.as_ptr();
        let all = nd_grad_dx::WideRows { mu_in, inv_std: w.inv_std.as_ptr(), k: w.aux.as_ptr() };
        nd_grad_dx::sweep_checked(x, dy, dx, rows as usize, m as usize, abk, all.from(row0));
    } else {
        nd_grad_dx::sweep(x, dy, dx, rows as usize, m as usize, abk);
    }
}

/// Backward reduction of SwitchNorm1d (`oned_grad::reduce`) on x and dy of [n, c].
///
/// # Safety
/// Pointers as in `layout` and `oned_grad::reduce`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_backward_reduce_1d(
    x: *const f32,
    dy: *const f32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    let sums = sums(work, LAYOUT_1D, mode, n, c);
    oned_grad::reduce(x, dy, n, c, mode, &layer, st, work, sums);
}

/// Backward dx pass of SwitchNorm1d (`oned_grad::dx`), after `sn_backward_reduce_1d`. It turns
/// the sums' gmB, gvB into per-column constants (they are not results). `dx` may equal `dy`.
///
/// # Safety
/// Pointers as in `layout` and `oned_grad::dx`; the caller owns and sizes every buffer.
#[no_mangle]
pub unsafe extern "C" fn sn_backward_dx_1d(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
    count: f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    let sums = sums(work, LAYOUT_1D, mode, n, c);
    oned_grad::dx(x, dy, dx, n, c, mode, &layer, st, work, sums, count);
}

/// Number of tiles of the split statistics pass of SwitchNorm1d (`oned::Tiles`): fixed by n, c
/// and the mode, not by the thread count.
#[no_mangle]
pub extern "C" fn sn_stats_tiles_1d(n: u32, c: u32, mode: u32) -> u32 {
    oned::Tiles::new(n as usize, c as usize, mode).count as u32
}

/// Tiles tile0..tile0 + tiles of the split statistics pass of SwitchNorm1d (`oned::stats_tiles`;
/// x: the whole tensor). After every tile ran, `sn_stats_finish_1d` ends the pass.
///
/// # Safety
/// As `sn_stats_1d`; tile0 + tiles <= `sn_stats_tiles_1d(n, c, mode)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_stats_tile_1d(
    x: *const f32,
    tile0: u32,
    tiles: u32,
    n: u32,
    c: u32,
    mode: u32,
    stats: *mut f64,
    scratch: *mut u8,
) {
    let (n, c) = (n as usize, c as usize);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    oned::stats_tiles(x, tile0 as usize, tiles as usize, n, c, mode, st, scratch as *mut f32);
}

/// The end of a split statistics pass of SwitchNorm1d, once every tile ran
/// (`oned::tiles_finish`): the same statistics as `sn_stats_1d`, bit for bit.
///
/// # Safety
/// As `sn_stats_1d`.
#[no_mangle]
pub unsafe extern "C" fn sn_stats_finish_1d(
    x: *const f32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    scratch: *mut u8,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    oned::tiles_finish(x, n, c, mode, &layer, st, scratch as *const f32);
}

/// `sn_normalize_1d` over the `rows` rows row0.. only (x, y: the whole tensor's).
///
/// # Safety
/// As `sn_normalize_1d`; row0 + rows <= n.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_normalize_rows_1d(
    x: *const f32,
    y: *mut f32,
    row0: u32,
    rows: u32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    oned::normalize_rows(x, y, row0 as usize, rows as usize, c, mode, &layer, st);
}

/// Number of tiles of the backward reduction of SwitchNorm1d (`oned_grad::Tiles`): fixed by n
/// and c, not by the thread count.
#[no_mangle]
pub extern "C" fn sn_backward_tiles_1d(n: u32, c: u32) -> u32 {
    oned_grad::Tiles::new(n as usize, c as usize).count as u32
}

/// Tiles tile0..tile0 + tiles of the backward reduction of SwitchNorm1d
/// (`oned_grad::reduce_tiles`; x, dy: the whole tensor's). After every tile ran,
/// `sn_backward_combine_1d` ends the reduction.
///
/// # Safety
/// As `sn_backward_reduce_1d`; tile0 + tiles <= `sn_backward_tiles_1d(n, c)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_backward_tile_1d(
    x: *const f32,
    dy: *const f32,
    tile0: u32,
    tiles: u32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    let mut sums = sums(work, LAYOUT_1D, mode, n, c);
    let (t0, tn) = (tile0 as usize, tiles as usize);
    oned_grad::reduce_tiles(x, dy, t0, tn, n, c, mode, &layer, &st, work, &mut sums);
}

/// The rest of `sn_backward_reduce_1d` once every tile ran (`oned_grad::combine`).
///
/// # Safety
/// As `sn_backward_reduce_1d`.
#[no_mangle]
pub unsafe extern "C" fn sn_backward_combine_1d(
    n: u32,
    c: u32,
    mode: u32,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c) = (n as usize, c as usize);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    let sums = sums(work, LAYOUT_1D, mode, n, c);
    oned_grad::combine(n, c, mode, &st, work, sums);
}

/// The first part of `sn_backward_dx_1d`, once per call: the per-column constants in place of
/// gmB, gvB (`oned_grad::dx_constants`); then `sn_backward_dx_rows_1d` per range of rows.
///
/// # Safety
/// As `sn_backward_dx_1d`.
#[no_mangle]
pub unsafe extern "C" fn sn_backward_dx_constants_1d(
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    work: *mut f64,
    count: f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let mut sums = sums(work, LAYOUT_1D, mode, n, c);
    oned_grad::dx_constants(c, mode, &layer, &mut sums, count);
}

/// The dx sweep of SwitchNorm1d over the `rows` rows row0.. (x, dy, dx: the whole tensor's),
/// after `sn_backward_dx_constants_1d` (`oned_grad::dx_rows`).
///
/// # Safety
/// As `sn_backward_dx_1d`; row0 + rows <= n.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sn_backward_dx_rows_1d(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    row0: u32,
    rows: u32,
    n: u32,
    c: u32,
    mode: u32,
    layer: *const u8,
    stats: *mut f64,
    work: *mut f64,
) {
    let (n, c) = (n as usize, c as usize);
    let layer = Layer::read(layer, c);
    let st = Stats::split(stats, LAYOUT_1D, n, c);
    let sums = sums(work, LAYOUT_1D, mode, n, c);
    let (r0, rn) = (row0 as usize, rows as usize);
    oned_grad::dx_rows(x, dy, dx, r0, rn, n, c, mode, &layer, &st, work, &sums);
}

/// Backward roofline: returns sum (x + dy) and writes dx = x + dy (see `roofline`).
///
/// # Safety
/// `x`, `dy` readable and `dx` writable for `len` floats, `dx` not partially overlapping them.
#[no_mangle]
pub unsafe extern "C" fn sn_roofline_backward(
    x: *const f32,
    dy: *const f32,
    dx: *mut f32,
    len: u32,
) -> f32 {
    roofline::roofline_backward(x, dy, dx, len as usize)
}

/// Roofline: returns sum x[0..len) and copies x to y; no other math (see `roofline`).
///
/// # Safety
/// `x` readable and `y` writable for `len` floats, not partially overlapping.
#[no_mangle]
pub unsafe extern "C" fn sn_roofline(x: *const f32, y: *mut f32, len: u32) -> f32 {
    roofline::roofline(x, y, len as usize)
}
