// row_sums.wgsl: the merge of a row's segment summaries (sn_row_merge.wgsl describes it), for
// sn_row_merge and sn_group_refine. shaders/_build.ts pastes it where a shader has the line
// `//!include row_sums.wgsl` (after common.wgsl and pair.wgsl); it reads the includer's `parts`.

// A row's segments merged: the Chan merge (its M2 for the tests), count, flags, and the row mean
// K0 + q1 + q2 (K0 the first segment's shift) with q1 + q2 = T / count as a pair.
struct RowSums {
  acc: Acc,
  count: u32,
  flags: u32,
  q1: f32,
  q2: f32,
}

// The segments parts[base] .. parts[base + chunks - 1] of one row.
fn row_sums(base: u32) -> RowSums {
  let first = parts[base];
  var acc = Acc(f32(first.count), first.mean, first.m2);
  var count = first.count;
  var flags = first.flags;
  // T = sum_k count_k ((K_k - K0) + mean_k) as a pair; counts are < 2^12 (seg_len <= 4096).
  var t = pair_add_times(vec2<f32>(0.0), f32(first.count), first.mean);
  for (var k = 1u; k < P.chunks; k++) {
    let p = parts[base + k];
    acc = merge(acc, Acc(f32(p.count), (p.shift - first.shift) + p.mean, p.m2));
    count += p.count;
    flags = merge_flags(flags, p.flags);
    let dk = two_sum(p.shift, -first.shift);
    let w = f32(p.count);
    t = pair_add_times(pair_add_times(pair_add_times(t, w, dk.x), w, dk.y), w, p.mean);
  }
  // q = T / count as q1 + q2: q1 = f32(T / count), then the remainder T - q1 count exactly.
  let q = pair_mean(t, max(count, 1u)); // q1 corrected where the division rounds otherwise
  return RowSums(acc, count, flags, q.x, q.y);
}

// The merged row of finite values (count > 0) with `flags`, re-centred.
// M2 = sum_k M2_k (a pair: exact additions of the segments' pairs) + sum_k count_k dev_k^2,
// dev_k the segment mean minus the row mean, both sums as pairs (dev_k a pair too): rows made of
// blocks of different offsets, or with a trend, have segment means far apart, where the second
// sum is much of M2, and a float32 one left M2 ~2^-24 of itself off (an evaluation of such rows
// of 2049 floats, their variances within 2e-6 of running_var and summed again as pairs by
// refine_variance: var_weight's gradient 28x its tolerance, plausible_shapes_fuzz seed 1905).
// The Chan merge of `acc` rounds at every one of its steps instead.
fn merged_row(base: u32, s: RowSums, flags: u32) -> Partial {
  let first = parts[base];
  var m2 = vec2<f32>(0.0);
  var between = vec2<f32>(0.0);
  for (var k = 0u; k < P.chunks; k++) {
    let p = parts[base + k];
    m2 = pair_add(pair_add(m2, p.m2), p.m2_lo);
    let dk = two_sum(p.shift, -first.shift);
    let dev = pair_add(pair_add(pair_add(two_sum(dk.x, -s.q1), dk.y), p.mean), -s.q2);
    between = pair_sum(between, pair_mul(pair_mul(dev, dev), vec2<f32>(f32(p.count), 0.0)));
  }
  m2 = pair_sum(m2, between);
  // Re-centred: shift = f32(K0 + q1), mean = the rest of K0 + q1 + q2.
  let c = two_sum(first.shift, s.q1);
  let mean = c.y + s.q2;
  // A row mean below 2^-FINE_MEAN_BELOW of its unit: its fine word (FINE_MEAN_UNIT, common.wgsl)
  // from its segments' (a loop of bound 0 for every other row: lavapipe skips a loop no lane
  // enters). A row of +-v pairs of ~2^66 over 5000 floats whose mean is 2^-179 of its std held
  // it as 0, `mean_weight`'s gradient 0 for -1.8e-23 (tests/mean_below_unit_test.ts).
  let low = words_below_fine(c.x, mean);
  let u = unit_of(flags);
  var t = vec2<f32>(0.0);
  var ok = true;
  for (var k = 0u; k < select(0u, P.chunks, low); k++) {
    let p = parts[base + k];
    // Each segment's own fine word where it has one, else its words brought to that unit by
    // their bits (fine_member_ok), count_k times each (counts below 2^12: exact products).
    ok = ok && fine_member_ok(p, u);
    let w = f32(p.count);
    let words = pair_add_times(pair_add_times(t, w, scale2(p.shift, u - FINE_MEAN_UNIT)), w, scale2(p.mean, u - FINE_MEAN_UNIT));
    t = select(words, pair_add_times(t, w, p.fine), p.fine != 0.0);
  }
  return Partial(c.x, mean, m2.x, s.count, flags, m2.y, fine_word(t, max(s.count, 1u), low && ok), 0.0);
}
