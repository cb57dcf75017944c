// sn1d_wide_normalize.wgsl: layout "1d", after sn1d_normalize: y of the elements whose LN or BN
// group is scaled (F_SCALED: wide data), or whose channel's gamma / std may be factor-wide
// (sn_group_stats lists those groups), written again in scaled units, with the element's two
// terms brought to the unit 2^e of its mix (wide_map):
//   y = 2^g (((x * 2^-e - hi') - lo') * scale' + beta 2^-g)   (wide_y; NaN where the map is bad)
// x scaled by its bits (scale2). A workgroup per listed group (64 workgroups taking them in
// turn), its threads over the group's elements in this dispatch's window of x and y: for
// sample n all of row n, for channel c column c (an element in both is written twice, with the
// same value). The loop's bound is one load from one address, so without wide data lavapipe
// skips its code.

//!include common.wgsl
//!include sn1d_mix.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
// The scaled groups: a count, then group indices (sn_group_stats).
@group(0) @binding(5) var<storage, read> wide_groups: array<u32>;
// As in sn1d_normalize: LN groups from group rec_base on, BN groups from chan_base on.
@group(0) @binding(6) var<storage, read> cgroups: array<Group>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let count = wide_groups[0];
  for (var k = linear_group(wid, nwg); k < count; k += nwg.x * nwg.y) {
    let g = wide_groups[LIST_FIRST + k];
    let first = P.elem_base;
    let end = min(P.elem_base + 4u * P.vec_count, P.total);
    let span = group_span(g, first, end);
    for (var j = span.x + lid; j < span.y; j += 64u) {
      let nc = group_member(g, j);
      write_y(nc.x, nc.y, first, end);
    }
  }
}

fn write_y(n: u32, c: u32, first: u32, end: u32) {
  let e = n * P.c + c;
  if (e >= first && e < end) {
    let i = e - first;
    let ln = fine_group(groups[n - P.rec_base]);
    let bn = fine_group(cgroups[P.n + c - P.chan_base]);
    let none = Term(0.0, 0.0, 0.0, 0u);
    let w = wide_map_1d(ln, bn, affine[c], affine[P.c + c]);
    // std 0 with eps 0 (a constant sample in a channel of BN variance 0): std_zero_y.
    let zero = std_zero(group_term(ln), group_term(bn), none) &&
      ((ln.flags | bn.flags) & F_CLASS) == 0u && !w.var_inf;
    // A mean far below the unit (fine_mean): x - mu in the mean's unit where x is below
    // 2^(fm.e + FINE_X), y = 4 (d sm 2^kf + beta / 4) with the scale as mantissa sm and
    // exponent; x alone in the mix's unit above.
    let fm = fine_mean(group_term(ln), group_term(bn), none, w.e, fine_words(w));
    let xs = scale2(x[i], -w.e);
    // The lighter term's share w_o (mu_o - mu_a) more than 2^100 below the mix's unit (a mean
    // weight near 2^-126 times a difference of ~2^-24 there), which w.lo holds below float32's
    // normal range: x - mu as x - a in fine_mean's unit, less the share in its own unit 2^fl.pe
    // (fine_low), as sn_wide_normalize takes it (a constant channel of -3e20 under an LN mean
    // weight of e^-87: y 0, -3.3 and -5.0 for -3.5; tests/sn1d_small_xc_test.ts).
    let fl = fine_low(group_term(ln), group_term(bn), none);
    let low = !fm.ok & fm.finite & (fm.e > -900) & (fl.pe < fm.e - 60) & (fl.pe > -900) & (fl.pe - w.e < -100);
    let fine = (fm.ok | low) & (bits_exponent(x[i]) < fm.e + FINE_X);
    // (xs - hi) - lo cancelling by 2^5 or more: x - mu from exact pairs (d_pairs_1d). (By
    // 2^18, lo's rounding, a few ulps, was up to ~2^-4 of x - mu between: y 5.7e-3 relative off
    // at x - mu ~1e33 beside lo ~1e38, tests/far_anchor_mean_test.ts; as sn_wide_normalize.)
    // Not where they give below 2^-48 of lo: float64's rounding of lo's part (2^-53 of it), which
    // the reference and WASM lose, is 2^-5 of x - mu or more there (a sample [-5e29, -1.67e29]
    // beside a running_mean of 1 under equal weights: x - mu exactly -0.5, float64 0, y -4.6e8
    // for 0 over a std of 2^-63; as sn_wide_normalize, attack fuzzer seed 4744).
    let d0 = (xs - w.hi) - w.lo;
    let dp = d_pairs_1d(ln, bn, units_1d(ln, bn, w.e), w.hi, xs);
    let d1 = select(d0, dp, (abs(d0) < abs(w.lo) * 0x1p-5f) & (abs(dp) >= abs(w.lo) * 0x1p-48f));
    let d = select(d1, xs, fm.ok);
    let da = scale2(x[i], -fm.e) - fm.hi;
    let near = bits_exponent(da) + fm.e - fl.pe < 100;
    let dl = select(da - scale2(fl.parts, fl.pe - fm.e), fine_low_d(fl, scale2(da, fm.e - fl.pe)), near);
    let df = select(da - fm.lo, dl, low);
    let es = bits_exponent(w.scale);
    let kf = select(fm.e, fl.pe, low & near);
    // t = d scale' below float32's normal range where y is not (a large gamma: the 2^g apart
    // brings it back), which a GPU that flushes takes for 0 (NVIDIA, SwiftShader: x ~1e-30 in
    // the unit 1 over a std of 3e9 set by its sample's 1e10, t ~5e-40 under gamma 3e38, y 0 for
    // 0.073): y from d and scale' as mantissa and exponent, as y_fine forms it (the same
    // expression, d in the unit 2^e; only where t is 0 or subnormal, so elsewhere the bits are
    // those before).
    let t = d * w.scale;
    let under = (abs(t) < 0x1p-126f) & (d != 0.0) & (class_bits(d) == 0u) & !fine;
    let yf_d = select(df, d, under);
    let yf_k = select(kf, w.e, under);
    let y_fine = (scale2(yf_d * scale2(w.scale, -es), w.g + es + yf_k - w.e - 2) + w.beta * 0.25) * 4.0;
    // t = y 2^-g can pass float32's range where y does not: when |gamma| < 1 (gamma's mantissa
    // in [1, 2) makes |t| up to 2^-g |y|: y 2e38 under gamma 0.72 came out +Infinity), and when
    // beta of the other sign brings y back (gamma 1, beta -3e38: y 1.7e38): such a y is formed
    // again as 4 ((d 2^(g - 2)) scale' + beta / 4) (d 2^(g - 2) exact by its bits: d is large
    // where t overflows), whose terms stay in float32's range wherever |y| does.
    let over = (class_bits(t) & (F_POS_INF | F_NEG_INF)) != 0u && class_bits(d) == 0u;
    let y_over = (scale2(d, w.g - 2) * w.scale + w.beta * 0.25) * 4.0;
    // x - mu as x alone where mu is exactly 0 without a fine mean (a batch mean of 0) or x lies
    // above fine_mean's range, 2^100 or more under the unit: x 2^-e was below float32's normal
    // range there (flushed on lavapipe: a batch mean of 0 over [-0.98, -3e38, 0.98, 3e38, ..]
    // gave y 0 for -1.83 under gamma 3e38), so x from its own mantissa and exponent.
    let ex = bits_exponent(x[i]);
    let mu_zero = !fm.ok & ((bitcast<u32>(w.hi) << 1u) == 0u) & ((bitcast<u32>(w.lo) << 1u) == 0u);
    let alone = (mu_zero | (fm.ok & !fine)) & (ex < w.e - 100);
    let xm = scale2(x[i], -ex);
    let y_alone = (scale2(xm * scale2(w.scale, -es), w.g + es + ex - w.e - 2) + w.beta * 0.25) * 4.0;
    let y_map = select(select(select(wide_y(w, t), y_over, over), y_fine, fine | under), y_alone, alone);
    y[i] = select(select(y_map, qnan(), w.bad), std_zero_y(select(select(d, df, fine), xm, alone), w.scale), zero);
  }
}
