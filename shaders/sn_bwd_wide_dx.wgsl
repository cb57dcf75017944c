// sn_bwd_wide_dx.wgsl: the last backward step of layout "nd", after sn_bwd_dx: dx of the wide
// rows (their map's fourth word WIDE_MARK | (D + 512) | (U + 512) << 10, sn_bwd_wide_coef),
// written again in scaled units, with u and K the unit and shift of the row's own summary:
//   dx[i] = 2^U (dy[i] 2^-D gs' + (x[i] 2^-(u + 32 S) - K 2^-32 S) B' + A')   (scale2: exact, by bits)
// (with A_FAR, bit 31: A' is 2^A_LIFT higher and added apart, 2^(U - A_LIFT) A')
// and NaN where the map's A is NaN; with INF_MARK (sums not finite) x[i] 2^-u - K - lo_in. The rows come from a list sn_bwd_coef fills; a workgroup
// per segment of a listed row (list_grid's workgroups taking them in turn), over its elements
// in this dispatch's window of x, dy and dx.

//!include common.wgsl

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> coef: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> rows: array<Partial>;
// The wide rows: a count, then the rows (sn_bwd_coef).
@group(0) @binding(6) var<storage, read> wide_rows: array<u32>;

@compute @workgroup_size(64)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  // Workgroups take the listed rows' segments in turn (item k * chunks + j: segment j of listed
  // row k), those in this dispatch's window, their threads the segment's elements, so that no
  // thread loops more than ~66 times per item (common.wgsl: LIST_ITEMS_PER_GROUP). The loop's
  // bound is one load from one address, so without wide rows lavapipe skips its code.
  let items = wide_rows[0] * P.chunks;
  for (var item = linear_group(wid, nwg); item < items; item += nwg.x * nwg.y) {
    let row = wide_rows[LIST_FIRST + item / P.chunks];
    let span = listed_segment(row, item);
    if (span.x < span.y) {
      dx_segment(row, span, lid);
    }
  }
}

// The elements span.x .. span.y - 1 (of one segment of `row`) in this dispatch's window.
fn dx_segment(row: u32, span: vec2<u32>, lid: u32) {
  let k = coef[row - P.row_base];
  let p = rows[row - P.row_base];
  let f = bitcast<vec4<f32>>(k);
  let d_unit = i32(k.w & 0x3ffu) - 512;
  let u = i32((k.w >> 10u) & 0x3ffu) - 512;
  // x - K taken 2^(32 S) lower (S: bits 21, 22) where B' is 2^(32 S) higher (sn_bwd_coef).
  let x_shift = 32 * i32((k.w >> 21u) & 3u);
  let x_unit = unit_of(p.flags) + x_shift;
  let kx = select(p.shift, scale2(p.shift, -x_shift), x_shift != 0);
  // A map with INF_MARK (gradient sums not finite) has B and A of 0 or +-Infinity: x - mu_in
  // by its sign, (x - K) - lo_in (rounding keeps a sign; K + lo_in rounded to one float32 did
  // not), and A may be infinite without marking NaN. Elsewhere lo_in is in A (0 here: exact).
  let inf = (k.w & INF_MARK) != 0u;
  let lo_in = select(0.0, p.mean, inf);
  let bad = select(is_nan_marker(f.z), is_nan_bits(f.z), inf);
  // A' 2^A_LIFT higher where A lies far below the unit (sn_bwd_coef): added apart, below.
  let far_a = (k.w & A_FAR) != 0u;
  let a_in = select(f.z, 0.0, far_a);
  for (var i = span.x + lid; i < span.y; i += 64u) {
    let dv = dy[i];
    var dt = scale2(dv, -d_unit) * f.x;
    // dy 2^-D below float32's normal range, which scale2 gives as 0, while dy 2^-D gs' 2^U may
    // lie above it (gs' up to 2^64; a constant row of 0 under gamma s 1e5, dy ~5e-42 beside dy
    // ~1e-31 in units of 1: dx 0 where the reference has 5e-37, attack fuzzer seed 4893): dy
    // gs' in dy's own unit, its exponent e (dy taken to [1, 2), exact), brought to dx's units
    // apart from the row's other terms (summed in the row's unit first: apart, (x - K) B' and A'
    // of a row whose dx overflows can each pass float32's range, +-Infinity and NaN for the
    // reference's Infinity) and added to them there. Lifting dy by 2^64 in the row's units
    // instead kept dy only down to 2^-190 of them, and the sum in the row's dx unit, where a dy
    // 2^-218 below the row's largest (SwitchNorm2d evaluation under BN alone, dy -2.05e-28
    // beside 1.565e38) gave dx 0 for 1.08e-23 (session 47, helper-196's probe;
    // tests/wide_dx_far_dy_test.ts). Rare: a branch, the common dy's arithmetic unchanged (dt
    // taken as 0 in the branch, not its own expression, so that compilers fuse as before).
    let far = bits_exponent(dv) - d_unit < -126 && (bitcast<u32>(dv) & 0x7fffffffu) != 0u;
    if (far) {
      dt = 0.0;
    }
    let v = dt + ((scale2(x[i], -x_unit) - kx) - lo_in) * f.y + a_in;
    var out = scale2(v, u);
    if (far) {
      let e = bits_exponent(dv);
      out = scale2(scale2(dv, -e) * f.x, e - d_unit + u) + out;
    }
    if (far_a) {
      out = scale2(f.z, u - A_LIFT) + out;
    }
    // A term added apart and the row's sum both past float32's range with opposite signs (Inf -
    // Inf): the row's sum alone, whose bound lies 2^126 or more above the term's, as before the
    // terms were added apart (attack fuzzer seed 313396: a SwitchNorm3d evaluation whose dx
    // overflows under terms of ~1e155 and an A 2^220 below them, NaN for +-Infinity).
    if ((far || far_a) && is_nan_bits(out) && !is_nan_bits(v)) {
      out = scale2(v, u);
    }
    dx[i] = select(out, qnan(), bad);
  }
}
