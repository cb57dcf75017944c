// deviation_sum.wgsl: an exact-pair sum over a range of x, for sn_wide_stats and
// sn_group_refine. shaders/_build.ts pastes it where a shader has the line
// `//!include deviation_sum.wgsl` (after common.wgsl and pair.wgsl); it reads the includer's `x`.

// sum of x * 2^k - centre over elements s .. e - 1: each difference exact (two_sum: d + err),
// the d summed as a float32 pair (two_sum), the tiny err and low words in float32.
fn deviation_sum(s: u32, e: u32, k: i32, centre: f32) -> f32 {
  let one = opaque_one();
  var hi = 0.0;
  var lo = 0.0;
  for (var i = s; i < e; i++) {
    var v = x[i];
    if (k != 0) {
      v = scale2(v, k);
    }
    let d = (v - centre) * one;
    let b = d - v;
    let t = (hi + d) * one;
    let bt = t - hi;
    lo += ((v - (d - b)) + (-centre - b)) + ((hi - (t - bt)) + (d - bt));
    hi = t;
  }
  return hi + lo;
}
