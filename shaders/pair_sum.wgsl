// pair_sum.wgsl: exact float32 sums as hi/lo pairs, for the passes of layout "1d" that merge many
// summaries of a row or column (sn_group_stats) or add many tile sums (sn_bwd_groups), where one
// dominating term would otherwise swallow the rest in float32 (a column with one row of 1e7
// among rows of ~1: its mean came out 2e-3 relative off). Included after common.wgsl; not a
// shader on its own. The same arithmetic as sn_row_merge.wgsl's (which keeps its own copy):
// exactness relies only on additions (two_sum, whose result an optimiser cannot simplify: it
// goes through `pair_one`, 1.0 read from the uniforms) and on products of operands of at most 12
// significant bits (cut by masking their bit patterns), exact whether or not a compiler fuses
// them into an fma. An including shader sets pair_one = pair_one_value() before any pair sum.

var<private> pair_one: f32;

// 1.0, from the uniforms (inf_bits is never 0): a value no compiler can fold.
fn pair_one_value() -> f32 {
  return f32(P.inf_bits != 0u);
}

// s + e = a + b exactly, s = f32(a + b) (Knuth's TwoSum).
fn pair_two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = (a + b) * pair_one;
  let bb = s - a;
  return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}

// (hi, lo) + v, as a float32 pair.
fn pair_add(p: vec2<f32>, v: f32) -> vec2<f32> {
  let s = pair_two_sum(p.x, v);
  return pair_two_sum(s.x, s.y + p.y);
}

// p + q, both pairs.
fn pair_add_pair(p: vec2<f32>, q: vec2<f32>) -> vec2<f32> {
  return pair_add(pair_add(p, q.x), q.y);
}

// v cut into a part with 12 significant bits and the rest (also <= 12 bits): v = hi + lo.
fn pair_split12(v: f32) -> vec2<f32> {
  let hi = bitcast<f32>(bitcast<u32>(v) & 0xfffff000u);
  return vec2<f32>(hi, v - hi);
}

// p + k * v for an integer k < 2^12 (exact products).
fn pair_add_times(p: vec2<f32>, k: f32, v: f32) -> vec2<f32> {
  let s = pair_split12(v);
  return pair_add(pair_add(p, k * s.x), k * s.y);
}

// p - k * v for any u32 k: k split into parts of at most 12 significant bits as well.
fn pair_sub_times(p: vec2<f32>, k: u32, v: f32) -> vec2<f32> {
  let s = pair_split12(v);
  var q = p;
  for (var part = 0u; part < 3u; part++) {
    let kp = f32(k & (0xfffu << (12u * part))); // bits 24.. of a u32 are 8: exact too
    q = pair_add(q, -(kp * s.x));
    q = pair_add(q, -(kp * s.y));
  }
  return q;
}

// The mean of `count` values whose sum is the pair t, as a pair (q1, q2): q1 = f32(t / count),
// q2 the rest from the exact remainder t - q1 count.
fn pair_mean(t: vec2<f32>, count: u32) -> vec2<f32> {
  let q1 = (t.x + t.y) / f32(count);
  let rem = pair_sub_times(t, count, q1);
  return vec2<f32>(q1, (rem.x + rem.y) / f32(count));
}
