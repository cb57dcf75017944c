// deviation_sum.wgsl: exact-pair sums over a range of x, for sn_wide_stats and
// sn_group_refine. shaders/_build.ts pastes it where a shader has the line
// `//!include deviation_sum.wgsl` (after common.wgsl and pair.wgsl); it reads the includer's `x`.

// sum of x * 2^k - centre over elements s .. e - 1: each difference exact (two_sum: d + err),
// the d summed as a float32 pair (two_sum), the tiny err and low words in float32.
fn deviation_sum(s: u32, e: u32, k: i32, centre: f32) -> f32 {
  return deviation_sum_pair(s, e, k, centre).x;
}

// deviation_sum as a float32 pair (hi = its float32 value): a mean summed again about its shift
// keeps the rest of its quotient (pair_mean), Partial.mean_rest.
fn deviation_sum_pair(s: u32, e: u32, k: i32, centre: f32) -> vec2<f32> {
  var hi = 0.0;
  var lo = 0.0;
  for (var i = s; i < e; i++) {
    var v = x[i];
    if (k != 0) {
      v = scale2(v, k);
    }
    let d = opaque(v - centre);
    let b = opaque(d - v);
    let t = opaque(hi + d);
    let bt = opaque(t - hi);
    lo += (opaque(v - opaque(d - b)) + (-centre - b)) + (opaque(hi - opaque(t - bt)) + (d - bt));
    hi = t;
  }
  return two_sum(hi, lo);
}

// The sums of d = x * 2^k - centre and of d^2 over elements s .. e - 1: (sum d, then sum d^2
// as a pair hi, lo). k is 0 for unscaled rows (|x| within 2^-21 to 2^40, where d^2 stays
// normal), else a scaled row's unit (|x 2^k| <= 1, each x scaled by its bits, exact, subnormal x
// included; squares of deviations below 2^-63 of the row's largest |x| may be flushed, far below
// the M2 of any row that is not constant).
// Each d exact as a pair (two_sum: d.x + d.y), d.x^2 exact (pair_times), 2 d.x d.y in float32
// (~2^-24 of d^2 at most, its rounding ~2^-48), the squares summed as a float32 pair; sum d as
// deviation_sum forms it. For the M2 of a segment about its accurate mean (sn_wide_stats,
// sn_group_refine): ~2^-45 of itself off, where the float32 passes' are a few ulps.
fn deviation_moments(s: u32, e: u32, k: i32, centre: f32) -> vec3<f32> {
  var sum = vec2<f32>(0.0);
  var sq = vec2<f32>(0.0);
  for (var i = s; i < e; i++) {
    var v = x[i];
    if (k != 0) {
      v = scale2(v, k);
    }
    let d = two_sum(v, -centre);
    let t = two_sum(sum.x, d.x);
    sum = vec2<f32>(t.x, sum.y + (t.y + d.y));
    sq = pair_sum(sq, pair_times(d.x, d.x));
    sq.y += 2.0 * d.x * d.y;
  }
  return vec3<f32>(sum.x + sum.y, sq.x, sq.y);
}

// The summary of the segment s .. e - 1 of `count` finite values, x taken as x * 2^k, about hi
// (a float32 near its mean): mean = hi + lo with lo = sum (x 2^k - hi) / count, and M2 as the
// pair sum (x 2^k - hi)^2 - count lo^2 (deviation_moments), written re-centred (shift hi, mean
// lo). k is 0 but for a scaled row of an alike group (sn_group_refine).
fn summed_about(s: u32, e: u32, k: i32, hi: f32, count: u32, flags: u32) -> Partial {
  let sums = deviation_moments(s, e, k, hi);
  let lo = fdiv_n(sums.x, f32(count));
  let m2 = pair_add(sums.yz, -(f32(count) * lo) * lo);
  return Partial(hi, lo, m2.x, count, flags, m2.y, 0.0, 0.0);
}
