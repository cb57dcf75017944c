// sn_wide_normalize.wgsl: layout "nd", after sn_normalize: y of the rows whose mix has a scaled
// term (F_SCALED: a wide row, or a row in a wide LN or BN group) or whose gamma / std is
// factor-wide (common.wgsl) written again, in scaled units. With the row's terms brought to
// the unit 2^e of the mix and gamma = gamma' 2^g (wide_map, common.wgsl):
//   y[i] = 2^g (((x[i] * 2^-e - hi') - lo') * scale' + beta 2^-g)   (NaN where the map is bad)
// x scaled by its bits (scale2), so x spread over +-3e38 or x ~ 1e-40 lose nothing. The rows
// come from the list sn_mix fills; a workgroup per segment of a listed row (list_grid's
// workgroups taking them in turn), its threads over the segment's elements in this dispatch's
// window of x and y. A separate
// pass, not a branch in sn_normalize: lavapipe runs both sides of a branch whose condition
// differs between invocations (masked), so there every in-range element would pay for it.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// Bound from row rec_base on (common.wgsl); groups and cgroups as in sn_mix.wgsl.
@group(0) @binding(3) var<storage, read> rows: array<Partial>;
@group(0) @binding(4) var<storage, read> groups: array<Group>;
@group(0) @binding(5) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
// The wide rows: a count, then the rows (sn_mix).
@group(0) @binding(6) var<storage, read> wide_list: array<u32>;
@group(0) @binding(7) var<storage, read> cgroups: array<Group>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Workgroups take the listed rows' segments in turn (item k * chunks + j: segment j of listed
  // row k), those in this dispatch's window, so that no thread loops more than ~66 times per
  // item (common.wgsl: LIST_ITEMS_PER_GROUP). The bound is the same for every invocation (one
  // load from one address), so without wide rows lavapipe skips the loop's code.
  let items = wide_list[0] * P.chunks;
  for (var item = linear_group(wid, nwg); item < items; item += nwg.x * nwg.y) {
    let row = wide_list[LIST_FIRST + item / P.chunks];
    let span = listed_segment(row, item);
    if (span.x < span.y) {
      normalize_segment(row, span, lid);
    }
  }
}

// The elements span.x .. span.y - 1 (of one segment of `row`) in this dispatch's window.
fn normalize_segment(row: u32, span: vec2<u32>, lid: u32) {
  let n = row / P.c;
  let c = row - n * P.c;
  let p = rows[row - P.rec_base];
  let ln = fine_group(groups[n - P.rec_base / P.c]);
  // Loaded either way and zeroed without usingBN (see sn_mix.wgsl).
  let use_bn = (P.flags & P_USING_BN) != 0u;
  let bn = fine_group(select_group(cgroups[select(0u, P.n + c - P.chan_base, use_bn)], use_bn));
  let t0 = nd_mean_term_in(p);
  let w = wide_map(t0, group_term(ln), group_term(bn), affine[c], affine[P.c + c]);
  // A mix of std 0 with eps 0 (sn_mix lists it): y = (x - mu) gamma / 0 (std_zero_y).
  let zero = std_zero(t0, group_term(ln), group_term(bn)) &&
    ((t0.flags | ln.flags | bn.flags) & F_CLASS) == 0u && !w.var_inf;
  // hi' (term 0's mean, whatever its weight) and lo' cancel more than 2^24 to mu (an evaluation
  // on a running_mean of 0 of weight ~1 beside a row's IN mean of -1.2e28, of weight 0, in the
  // unit 2^-29): (x 2^-e - hi') - lo' rounded x - mu to hi''s ulp (y 0 for -2.9e33 under gamma
  // 3e38, x -0.98 over a std of 1e5). There x - mu from mu's float32 pair (two_sum), as the
  // unscaled rows take it; |mu'| bounds the product with it.
  // mu's pair from lo's exact parts (wide_lo_pair) there: lo' alone rounds to hi''s ulp, which
  // may hold all of mu (a factor-wide evaluation on a running_mean of 1 of weight 1 beside a
  // row's IN mean of 6.25e8, of weight 0, in the unit 2^-86: lo' = -hi', mu 0, and x alone
  // taken for x - mu, y 0 for 3e30 under gamma -3e20 over a running_var of 1e-20).
  var mp = wide_lo_pair(t0, group_term(ln), group_term(bn), w);
  // A group summed again in triples (sn_group_refine: its mean_rest): lo from them
  // (wide_lo_triple), and x - mu about that mean for every element: a row of values ~1e-8 whose
  // LN and BN means of ~1e5 cancel in its mix (the groups 2^26 above its unit) had the rest of
  // wide_lo_pair rounded to ~1e-2 of its std (y up to 80x its tolerance).
  let triple = ln.mean_rest != 0.0 || bn.mean_rest != 0.0;
  if (triple) {
    let mt = wide_lo_triple(t0, group_term(ln), group_term(bn), w, p.mean_rest, ln.mean_rest, bn.mean_rest);
    if (((class_bits(mt.x) | class_bits(mt.y)) == 0u)) {
      mp = mt;
    }
  }
  let mu2 = two_sum(w.hi, w.lo);
  let cancel = triple | (exponent_of(mu2.x) < max(exponent_of(w.hi), exponent_of(w.lo)) - 24);
  let mq = two_sum(w.hi, mp.x);
  let mu3 = two_sum(mq.x, mq.y + mp.y);
  let exact = cancel & ((class_bits(mu3.x) | class_bits(mu3.y)) == 0u);
  let m_hi = select(select(w.hi, mu2.x, cancel), mu3.x, exact);
  let m_lo = select(select(w.lo, mu2.y, cancel), mu3.y, exact);
  // (x 2^-e - mu') scale' may pass float32 where y does not (|x - mu| / std beyond 2^127 with
  // a small gamma: an evaluation on a running_mean far from the data, over a tiny std): from a
  // bound of the product (every |x 2^-e| and |hi'| is at most 2^(field - 127 - e)), h > 0 moves
  // 2^h of it into gamma's exponent, applied to t by its bits.
  // And it may fall below float32's normal range where y does not (a large gamma: the 2^g
  // apart brings it back): where the bound lies below 2^-60, h < 0 lifts scale' to bring it to
  // 2^120 (scale' at most 2^126), so that t stays normal down to 2^-246 of the bound. A row of
  // x ~1e-30 (unit 1) over a std of 1e9 set by its sample's 1e10 had t ~1e-39 under gamma 3e38:
  // y 0 for 0.51 where a GPU flushes it (NVIDIA, SwiftShader; outlier_beside_tiny_sweep seed
  // 3369). Per row; powers of two, so rows whose bound lies at 2^-60 or above keep their bits.
  let xb = i32(max_field(p.flags)) - 126 - w.e;
  let tb = max(exponent_of(select(w.lo, m_hi, cancel)), xb) + 1 + exponent_of(w.scale);
  let lift = (tb < -60) & (exponent_of(w.scale) > -1000);
  let h = select(max(0, tb - 120), max(tb - 120, exponent_of(w.scale) - 126), lift);
  let sc = scale2(w.scale, -h);
  // A mean far below the unit (fine_mean): x - mu in the mean's unit for the elements below
  // 2^(fm.e + FINE_X), y = 4 (d sm 2^kf + beta / 4) with the scale as mantissa sm and exponent;
  // x alone in the mix's unit above.
  let fc = fine_centred(t0, group_term(ln), group_term(bn), w);
  let fm = fc.fm;
  let es = bits_exponent(w.scale);
  let sm = scale2(w.scale, -es);
  let kf = w.g + es + fm.e - w.e - 2;
  // Parts of that mean far below its anchor (fine_low, 2^fl.pe): x - mu as x - a in the unit
  // 2^fm.e, brought to 2^fl.pe less the parts where it fits there (x near a), else less the
  // parts brought to 2^fm.e. Parts 2^30 or more below it: a heaviest weight of 1 - e^-40 (1 in
  // float32) put x - mu 2^-58 below the unit, lost in the words hi', lo' (y -1e38 for 1.2e37).
  let fl = fc.fl;
  let low = fc.low;
  let kl = w.g + es + fl.pe - w.e - 2;
  // x - mu as x alone where mu' is 0 without a fine mean (a batch mean of 0; words below
  // float32's normal range, words_below_normal: a mean weight of 0 on term 0's mean in hi') or
  // the element lies above fine_mean's range, 2^100 or more under the unit: x 2^-e is below
  // float32's normal range from 2^126 under it (flushed on lavapipe: a batch mean of 0 over
  // [-0.98, -3e38, 0.98, 3e38] gave y 0 for -1.75 under gamma 3e38), so x from its own mantissa
  // and exponent, as in y_fine.
  let mu_zero = !fm.ok & words_below_normal(m_hi, m_lo);
  let kx = w.g + es - w.e - 2;
  // lo as an exact pair (wide_lo_pair): x - mu from it where (x 2^-e - hi') - lo' lies within
  // 2^-5 of lo's largest part (y = beta for 1.7e33: see wide_lo_pair); beyond, lo's float32
  // rounding (a few ulps of that part) is below ~2^-17 of x - mu, and the elements keep their
  // arithmetic. Not below 2^-48 of that part either: there x - mu lies under float64's rounding
  // of the parts (2^-53 each), which the reference and WASM lose (their anchored mean rounds
  // w_k (mu_k - mu_a) to float64), so the exact pair gave what neither resolves (an evaluation
  // of a constant row at -1.67e29 under equal LN and BN mean weights, its LN mean -3.33e29, on a
  // running_mean of 1: x - mu exactly -0.5, float64 0, y -4.6e8 for 0 over a std of 2^-63,
  // attack fuzzer seed 4744); the elements keep their arithmetic there too.
  for (var i = span.x + lid; i < span.y; i += 64u) {
    let xv = x[i];
    let xs = scale2(xv, -w.e);
    let fine = (fm.ok | low) & (bits_exponent(xv) < fm.e + FINE_X);
    let d0 = (xs - m_hi) - m_lo;
    let dp = wide_d_pair(xs, w.hi, mp);
    let resolved = (abs(d0) < mp.z * 0x1p-5f) & (abs(dp) >= mp.z * 0x1p-48f);
    let d1 = select(d0, dp, resolved & (class_bits(dp) == 0u));
    let d = select(d1, xs, fm.ok);
    let da = scale2(xv, -fm.e) - fm.hi;
    let near = bits_exponent(da) + fm.e - fl.pe < 100;
    let dl = fine_centred_d(fc, xv);
    let df = select(da - fm.lo, dl, low);
    let ex = bits_exponent(xv);
    let alone = (mu_zero | (fm.ok & !fine)) & (ex < w.e - 100);
    let xm = scale2(xv, -ex);
    let t = d * sc;
    let far = (scale2(t, w.g + h - 2) + w.beta * 0.25) * 4.0;
    let y_fine = (scale2(df * sm, select(kf, kl, low & near)) + w.beta * 0.25) * 4.0;
    let y_alone = (scale2(xm * sm, kx + ex) + w.beta * 0.25) * 4.0;
    let y_map = select(select(select(wide_y(w, t), far, h != 0), y_fine, fine), y_alone, alone);
    y[i] = select(select(y_map, qnan(), w.bad), std_zero_y(select(select(d, df, fine), xm, alone), w.scale), zero);
  }
}
