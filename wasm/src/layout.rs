//! Where a forward's inputs and outputs lie in linear memory, besides the tensors themselves.
//!
//! Layer block (`layer`, 16-byte aligned, `layer_bytes(C)` bytes), written by the caller:
//! ```text
//!   byte 0    f64 eps
//!   byte 8    f64 mean_mix[3]   softmax(mean_weight): nd (in, ln, bn), 1d (ln, bn, unused)
//!   byte 32   f64 var_mix[3]    softmax(var_weight), same order
//!   byte 56   f64 reserved (0)
//!   byte 64   f32 gamma[C], beta[C], running_mean[C], running_var[C]
//! ```
//! Statistics (`stats`, f64, `stats_len(layout, N, C)` values), written by the forward and left
//! there for a backward pass (R = N*C rows for nd, R = 0 for 1d, whose mixed statistics are
//! separable and recomputed from ln/bn):
//! ```text
//!   [0, R)           mu_in     per (n,c) mean            (nd only)
//!   [R, 2R)          var_in    per (n,c) unbiased var    (nd only)
//!   [2R, 3R)         mu        mixed mean per (n,c)      (nd only)
//!   [3R, 4R)         var       mixed var per (n,c)       (nd only)
//!   [4R, 5R)         err       mu's rounding per (n,c)   (nd only): the mixed mean is mu + err
//!                              (`nd_normalize::anchored_mean`), x - mu is (x - mu) - err
//!   [5R, 5R+F)       wide      nd (F = 2): 1 if some row is wide (wide.rs), then padding;
//!                              1d: F = 0
//!   [5R+F, 5R+F+N)   mu_ln     [5R+F+N, 5R+F+2N)  var_ln
//!   [5R+F+2N, +C)    mu_bn     then C of var_bn, which end the area
//! ```
//! `sn_stats_*` writes mu_in, var_in, mu_ln, var_ln and mu_bn, var_bn; `sn_normalize_nd` writes
//! mu, var, err. `mu_bn`/`var_bn` hold the batch statistics in training mode (the caller folds them
//! into the running buffers) and the running buffers that were used in evaluation mode; without
//! usingBN they are left as they were. With `MODE_BN_PARTIALS` (SyncSN) the statistics pass
//! leaves M2 = sum of squared deviations in `var_bn` instead of the variance (nd: over the
//! per-(n,c) IN statistics, sum_n var_in + sum_n (mu_in - mu_bn)^2; 1d: over x[:, c]), so that the
//! caller can merge (N, mu_bn, M2) across replicas exactly and write the merged variance back.
//!
//! Backward work area (`work`, f64, `work_len(layout, N, C)` values, 16-byte aligned), owned by
//! the caller from the reduction call to the dx call (K = 3 for nd with usingBN, else 2):
//! ```text
//!   nd: [0, 2R) (gm, gv) per row = (dL/dmu, dL/dvar), pairs (the dx call overwrites each pair
//!       with that row's f32 constants)   [2R, 3R) s = 1/sqrt(var + eps)
//!       [3R, 3R+N) gmL   [3R+N, 3R+2N) gvL   then the sums
//!   1d: [0, N) gmL   [N, 2N) gvL   then the sums (room for either mode), then the reduction's
//!       tile partials (`oned_grad::Tiles`: 4C per tile of rows, or 2N per tile of columns)
//!   sums (`sums_at`, `sums_len`): dWeight[C], dBias[C], meanDots[K], varDots[K], gmB[C], gvB[C],
//!   the mean dots' offset
//!   nd: then (`aux_at`) R f64 per row: for a wide row (wide.rs) the dx call puts its f64
//!       constants (a, b) in its pair, k here, and -1 in its s (which marks it for the sweep);
//!       then one f64, sum over the rows of |gm| + |gv| (for `wide::CallBounds`), then three:
//!       sum gm^2, sum gv^2 and the largest IN variance (for `nd_grad_means::refine_dots`); then
//!       (`refine_at`) N + C f64 for `nd_grad_refine` (LN mean corrections, a flag per channel)
//! ```
//! The sums are those a SyncSN backward adds up across replicas between the two calls, packed as
//! the reference backend packs them.
//!
//! Scratch (`scratch`, 16-byte aligned, `scratch_bytes(layout, N, C)` bytes), transient:
//! nd, f32 [hi, scale, bias, 0] per (n,c) row for the normalize sweep, then 4 f64 per row, the
//! f64 constants [mu, scale, beta, err] of a wide row (wide.rs), whose entry is then i32
//! [byte offset to them, 0, 0, 1]; 1d, per-column block means (f32[C]), sums of deviations and
//! of squared deviations (f64[C] each), every array 16-byte aligned, once per block of rows when
//! C <= 4096 (`oned::Tiles`), else once; then the columns' centres (f32[C], `oned::centre_parts`).

/// `layout` argument value of the nd kernels ([N, C, M]).
pub const LAYOUT_ND: u32 = 0;
/// `layout` argument value of the 1d kernels ([N, C]).
pub const LAYOUT_1D: u32 = 1;

/// `mode` bit: training (BN statistics from the batch) rather than evaluation.
pub const MODE_TRAINING: u32 = 1;
/// `mode` bit: BN statistics take part in the mix.
pub const MODE_USING_BN: u32 = 2;

/// `mode` bit: training with usingBN leaves the BN partials (M2 in `var_bn`) for a cross-replica
/// merge by the caller instead of the variance.
pub const MODE_BN_PARTIALS: u32 = 4;

/// `mode` bit of the statistics pass of layout "nd": a backward may follow, so rows whose mean
/// lies near 0 beside their std have it summed again in f64 (`nd::row_moments`).
pub const MODE_REFINE_MEANS: u32 = 8;

/// `mode` bit of a training forward of layout "nd" with usingBN under the batch average (not
/// SyncSN): the caller adds mu_bn and mu_bn^2 + var_bn onto the float32 sums in the running
/// buffers, so a channel whose statistics' error may move either sum's float32 rounding has its
/// members summed again in f64 (`nd::refine_batch_average`).
pub const MODE_BATCH_AVERAGE: u32 = 16;

/// Bytes of the layer block header before gamma.
pub const LAYER_HEADER_BYTES: usize = 64;

/// Size in bytes of the layer block for C channels.
pub fn layer_bytes(c: usize) -> usize {
    LAYER_HEADER_BYTES + 16 * c
}

/// Number of f64 values in the statistics area.
pub fn stats_len(layout: u32, n: usize, c: usize) -> usize {
    let rows = if layout == LAYOUT_ND { n * c } else { 0 };
    let flags = if layout == LAYOUT_ND { 2 } else { 0 };
    5 * rows + flags + 2 * n + 2 * c
}

/// Bytes of transient scratch a forward needs: nd, the per-row normalize constants
/// (4 f32 per (n,c), then 4 f64 per (n,c) for wide rows); 1d, the per-column block sums,
/// per block of rows for C <= 4096 (`oned::Tiles`: the split pass keeps every block's until they
/// are merged).
pub fn scratch_bytes(layout: u32, n: usize, c: usize) -> usize {
    if layout == LAYOUT_ND {
        48 * n * c
    } else {
        // The slots of sums (`oned::slots`), then the columns' centres.
        4 * (crate::oned::slot_floats(c) * crate::oned::slots(n, c) + (c + 3) / 4 * 4)
    }
}

/// Number of normalizers mixed: nd (in, ln, bn) or (in, ln); 1d (ln, bn) or (ln).
pub fn mix_len(layout: u32, using_bn: bool) -> usize {
    (if layout == LAYOUT_ND { 2 } else { 1 }) + using_bn as usize
}

/// f64 index of the packed gradient sums in the backward work area.
pub fn sums_at(layout: u32, n: usize, c: usize) -> usize {
    if layout == LAYOUT_ND {
        3 * n * c + 2 * n
    } else {
        2 * n
    }
}

/// Number of f64 values of the packed gradient sums: dWeight, dBias, gmB, gvB (C each), the
/// K-long meanDots, varDots, and last the mean dots' offset (`Sums::mean_offset`).
pub fn sums_len(layout: u32, using_bn: bool, c: usize) -> usize {
    4 * c + 2 * mix_len(layout, using_bn) + 1
}

/// The centre K about which the mean dots are taken (`Sums::mean_offset`): the first LN mean,
/// where every LN mean lies within 2^-10 of |K| from it (an offset of the data over 1024 times
/// their spread: there a_k = sum gm mu_k ~ K sum gm, which a float64 a_k holds only to its ulp,
/// ~1e-3 at K = 1e6 over 4.5M floats, where the logit gradients are differences a_k - a_j of
/// ~0.1; attack helper-82), outside SyncSN's training (`centred` false: the replicas add their
/// sums, offsets included, as the other backends' of 4C + 2K values); else 0.
///
/// Layout nd with `bn_pair` (IN and BN both of weight above 0): not where some row's IN mean
/// and its channel's BN mean differ by less than 2^-20 of their distance from K but by more than
/// 2^-20 of their sizes, whose difference mu_in - K and mu_bn - K round away and the plain dots
/// keep: one sample of a row ~1e29 beside rows ~1e-31 and ~1 (K ~1e28) took the IN means and a
/// running_mean of 0.1 to -K alike, `mean_weight`'s gradient 0 for -7.8e-35 under a BN weight of
/// e^-174 (mean_below_unit_sweep seed 280) and 0 for 2.4e37 under weights of 1/2. An LN mean
/// lies near K, so that its differences keep their bits about K.
pub fn dots_centre(st: &Stats, centred: bool, bn_pair: bool) -> f64 {
    let k = if centred && !st.mu_ln.is_empty() { st.mu_ln[0] } else { 0.0 };
    let reach = crate::simd::abs_f64(k) / 1024.0;
    let near = |v: &f64| crate::simd::abs_f64(*v - k) <= reach;
    if !(k.is_finite() && st.mu_ln.iter().all(near)) {
        return 0.0;
    }
    let c = st.mu_bn.len();
    if !bn_pair || k == 0.0 || c == 0 {
        return k;
    }
    let abs = crate::simd::abs_f64;
    const CUT: f64 = 1.0 / (1u64 << 20) as f64;
    let n = st.mu_in.len() / c;
    for (j, &b) in st.mu_bn.iter().enumerate() {
        // Such a pair has max(|a|, |b|) < max(|a - K|, |b - K|) < |b - K| / (1 - 2^-20): a BN
        // mean nearer K than 0 (a batch's, or a running_mean near the data) has none, and its
        // channel's rows are not read.
        if abs(b) > 2.0 * abs(b - k) {
            continue;
        }
        for i in 0..n {
            let a = st.mu_in[i * c + j];
            let d = abs(a - b);
            if d > 0.0 && d < CUT * abs(a - k).max(abs(b - k)) && d >= CUT * abs(a).max(abs(b)) {
                return 0.0;
            }
        }
    }
    k
}

/// `dots_centre`'s `bn_pair` of a layout nd call: BN used, and IN and BN both of mean weight
/// above 0.
pub fn bn_pair(layer: &Layer, using_bn: bool) -> bool {
    using_bn && layer.mean_mix[0] > 0.0 && layer.mean_mix[2] > 0.0
}

/// f64 index of the wide rows' k in the backward work area (nd).
pub fn aux_at(n: usize, c: usize) -> usize {
    sums_at(LAYOUT_ND, n, c) + sums_len(LAYOUT_ND, true, c)
}

/// f64 index of `nd_grad_refine`'s room in the backward work area (nd).
pub fn refine_at(n: usize, c: usize) -> usize {
    aux_at(n, c) + n * c + 4
}

/// Number of f64 values of the backward work area (room for the sums of either mode).
pub fn work_len(layout: u32, n: usize, c: usize) -> usize {
    if layout == LAYOUT_ND {
        refine_at(n, c) + n + c
    } else {
        let partials = crate::oned_grad::Tiles::new(n, c).partials_len(n, c);
        sums_at(layout, n, c) + sums_len(layout, true, c) + partials
    }
}

/// The layer block, read.
pub struct Layer<'a> {
    pub eps: f64,
    pub mean_mix: [f64; 3],
    pub var_mix: [f64; 3],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub running_mean: &'a [f32],
    pub running_var: &'a [f32],
}

impl<'a> Layer<'a> {
    /// # Safety
    /// `p` must point to a 8-byte aligned layer block for `c` channels that nothing writes to
    /// while the result lives.
    pub unsafe fn read(p: *const u8, c: usize) -> Layer<'a> {
        let h = p as *const f64;
        let f = p.add(LAYER_HEADER_BYTES) as *const f32;
        let part = |k: usize| core::slice::from_raw_parts(f.add(k * c), c);
        Layer {
            eps: *h,
            mean_mix: [*h.add(1), *h.add(2), *h.add(3)],
            var_mix: [*h.add(4), *h.add(5), *h.add(6)],
            gamma: part(0),
            beta: part(1),
            running_mean: part(2),
            running_var: part(3),
        }
    }
}

/// The statistics area, split into its arrays.
pub struct Stats<'a> {
    pub mu_in: &'a mut [f64],
    pub var_in: &'a mut [f64],
    pub mu: &'a mut [f64],
    pub var: &'a mut [f64],
    /// nd: the rounding of each `mu` (`nd_normalize::anchored_mean`'s err, 0 where it took the
    /// plain sum): the mixed mean is mu + err, and the backward takes x - mu as (x - mu) - err,
    /// as the forward's y and the reference (`muErr`) do.
    pub err: &'a mut [f64],
    /// nd: [1 if some row is wide (`wide`) else 0, 1 in an evaluation else 0], written by the
    /// normalize constants.
    pub wide: &'a mut [f64],
    pub mu_ln: &'a mut [f64],
    pub var_ln: &'a mut [f64],
    pub mu_bn: &'a mut [f64],
    pub var_bn: &'a mut [f64],
}

impl<'a> Stats<'a> {
    /// # Safety
    /// `p` must point to `stats_len(layout, n, c)` 8-byte aligned f64 values that nothing else
    /// reads or writes while the result lives.
    pub unsafe fn split(p: *mut f64, layout: u32, n: usize, c: usize) -> Stats<'a> {
        let all = core::slice::from_raw_parts_mut(p, stats_len(layout, n, c));
        let rows = if layout == LAYOUT_ND { n * c } else { 0 };
        let (mu_in, rest) = all.split_at_mut(rows);
        let (var_in, rest) = rest.split_at_mut(rows);
        let (mu, rest) = rest.split_at_mut(rows);
        let (var, rest) = rest.split_at_mut(rows);
        let (err, rest) = rest.split_at_mut(rows);
        let (wide, rest) = rest.split_at_mut(if layout == LAYOUT_ND { 2 } else { 0 });
        let (mu_ln, rest) = rest.split_at_mut(n);
        let (var_ln, rest) = rest.split_at_mut(n);
        let (mu_bn, var_bn) = rest.split_at_mut(c);
        Stats { mu_in, var_in, mu, var, err, wide, mu_ln, var_ln, mu_bn, var_bn }
    }
}

/// The packed gradient sums, split into their arrays (see the work area above).
pub struct Sums<'a> {
    pub d_weight: &'a mut [f64],
    pub d_bias: &'a mut [f64],
    pub mean_dots: &'a mut [f64],
    pub var_dots: &'a mut [f64],
    pub gm_bn: &'a mut [f64],
    pub gv_bn: &'a mut [f64],
    /// The mean dots are sum gm (mu_k - K) (`dots_centre`), and this K sum gm: a_k is their sum.
    pub mean_offset: &'a mut f64,
}

impl<'a> Sums<'a> {
    /// # Safety
    /// `p` must point to `sums_len(layout, using_bn, c)` 8-byte aligned f64 values that nothing
    /// else reads or writes while the result lives.
    pub unsafe fn split(p: *mut f64, layout: u32, using_bn: bool, c: usize) -> Sums<'a> {
        let k = mix_len(layout, using_bn);
        let all = core::slice::from_raw_parts_mut(p, sums_len(layout, using_bn, c));
        let (d_weight, rest) = all.split_at_mut(c);
        let (d_bias, rest) = rest.split_at_mut(c);
        let (mean_dots, rest) = rest.split_at_mut(k);
        let (var_dots, rest) = rest.split_at_mut(k);
        let (gm_bn, rest) = rest.split_at_mut(c);
        let (gv_bn, rest) = rest.split_at_mut(c);
        let mean_offset = &mut rest[0];
        Sums { d_weight, d_bias, mean_dots, var_dots, gm_bn, gv_bn, mean_offset }
    }

    /// The BN dot products (sum_c gmB[c] (mu_bn[c] - centre), sum_c gvB[c] var_bn[c]), summed
    /// in channel order, into `mean_dots[k]`, `var_dots[k]`.
    pub fn set_bn_dots(&mut self, k: usize, mu_bn: &[f64], var_bn: &[f64], centre: f64) {
        let (mut dm, mut dv) = (0.0, 0.0);
        for j in 0..self.gm_bn.len() {
            dm += self.gm_bn[j] * (mu_bn[j] - centre);
            dv += self.gv_bn[j] * var_bn[j];
        }
        self.mean_dots[k] = dm;
        self.var_dots[k] = dv;
    }
}
