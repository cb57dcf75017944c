// sn1d_bwd_wide_reduce.wgsl: backward step 1b of layout "1d", after sn1d_bwd_reduce: the tile
// lines with a wide element (scaled statistics, F_SCALED, or |dy| beyond DY_MAX), listed by
// sn1d_bwd_reduce, summed again with every element's terms in its own units (wide_element,
// sn1d_bwd_element.wgsl: x and dy scaled by their bits, the Grad's exponents D - E, D - 2E and D)
// added by grad_add, which aligns units. Entries are tile * 64 + the line's thread (< 32: a
// column, else a row). Blocks of 64 entries, a thread each, taken by the workgroups in turn: the
// loop's bound is one load from one address, so without wide lines lavapipe skips its code.
// Bindings and windows as sn1d_bwd_reduce.

//!include common.wgsl
//!include backward_common.wgsl
//!include pair.wgsl
//!include sn1d_mix.wgsl
//!include sn1d_bwd_element.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> groups: array<Group>;
@group(0) @binding(4) var<storage, read> affine: array<f32>; // gamma (C), then beta (C)
@group(0) @binding(5) var<storage, read_write> parts: array<Grad>;
@group(0) @binding(6) var<storage, read_write> cparts: array<Grad>;
@group(0) @binding(7) var<storage, read> wide_lines: array<u32>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let count = wide_lines[0];
  for (var base = linear_group(wid, nwg) * 64u; base < count; base += nwg.x * nwg.y * 64u) {
    if (base + lid < count) {
      line(wide_lines[LIST_FIRST + base + lid]);
    }
  }
}

fn line(entry: u32) {
  let tile = entry / 64u;
  let k = entry % 64u;
  let rt = tile / P.chunks;
  if (rt < P.seg_first || rt >= P.seg_end) {
    return; // another window's line
  }
  let t = tile_1d((rt - P.seg_first) * P.chunks + tile % P.chunks);
  // A line whose sums could pass float32's range (sn1d_bwd_element.wgsl: line_again) is summed
  // once more, every element of finite x and dy wide. One call of line_sum in a loop, not two
  // calls: each call inlines element's every path (wide_element, the pair terms), and two of them
  // took lavapipe's compile of this shader from ~0.8 s to ~4.6 s, paid by every device.
  var acc = grad_zero();
  var forced = false;
  loop {
    acc = line_sum(t, k, forced);
    if (forced || !line_again(acc)) {
      break;
    }
    forced = true;
  }
  if (k < TILE_1D) {
    cparts[t.rt * P.c + t.c0 + k - P.chan_base] = acc;
  } else {
    parts[(t.n0 + k - TILE_1D) * P.chunks + t.ct - P.rec_base] = acc;
  }
}

// The sum of line k of tile t (k < 32: column k, its t.rows elements; else row k - 32, its
// t.cols elements), of element's terms (forced: element_forced's, sn1d_bwd_element.wgsl). One
// loop for both kinds of line, so that element is inlined once.
fn line_sum(t: Tile1d, k: u32, forced: bool) -> Grad {
  var acc = grad_zero();
  let row = k >= TILE_1D;
  let count = select(t.rows, t.cols, row);
  for (var i = 0u; i < count; i++) {
    let r = select(i, k - TILE_1D, row);
    let cc = select(k, i, row);
    let e = tile_1d_elem(t, r, cc);
    acc = grad_add(acc, element(t.n0 + r, t.c0 + cc, x[e], dy[e], row, forced));
  }
  return acc;
}
