// bench_copy_backward.wgsl: the bandwidth yardstick of the backward in bench/webgpu_bench.ts,
// not part of SN. It moves the bytes an SN backward must move at least (x and dy read for the
// sums, x and dy read again and dx written) with no arithmetic to speak of:
//   y[i] = a[i] + b[i] + c[i] + d[i]     (a, b: x and dy; c, d: distinct copies of them, so
//                                          that the second reads cannot come from cache)
// One vec4 per thread, the same grid as sn_bwd_dx.wgsl.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> c: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> d: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let q = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (q >= arrayLength(&y)) {
    return;
  }
  y[q] = (a[q] + b[q]) + (c[q] + d[q]);
}
