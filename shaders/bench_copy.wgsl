// bench_copy.wgsl: the bandwidth yardstick of bench/webgpu_bench.ts, not part of SN. It moves
// the bytes an SN forward moves (x read twice, y written once) with no arithmetic to speak of:
//   y[i] = a[i] + b[i]      (a, b, y: vec4 arrays of the tensor's size; a and b are distinct
//                            buffers so that the second read cannot come from cache)
// One vec4 per thread, the same grid as sn_normalize.wgsl.

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;

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
  y[q] = a[q] + b[q];
}
