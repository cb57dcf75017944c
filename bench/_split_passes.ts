/**
 * Each dispatch of a compute pass in a pass of its own, for the bench and diagnostic tools that
 * look at dispatches one by one (bench/ab_passes.ts times them, tests/fuzz/nan_trace.ts copies
 * the buffers they bind): a stand-in pass keeps the pipeline and bind groups set on it, and at
 * each dispatch hands `onDispatch` a SplitDispatch whose `record` opens the dispatch's own pass
 * (same pipeline, bindings and grid, same place in the same encoder). This patches
 * GPUDevice.createCommandEncoder and GPUCommandEncoder.beginComputePass: tools only.
 *
 * @module
 */

/** A dispatch of a split pass (see the module's comment). */
export interface SplitDispatch {
  encoder: GPUCommandEncoder;
  device: GPUDevice;
  pipeline: GPUComputePipeline;
  /** The bind groups set on the pass: index to (group, dynamic offsets). */
  groups: Map<number, [GPUBindGroup, number[] | undefined]>;
  /** "XxYxZ", or "indirect". */
  grid: string;
  /** Records the dispatch into a pass of its own, begun with `descriptor`. */
  record(descriptor?: GPUComputePassDescriptor): void;
}

/**
 * Splits every compute pass begun from now on into a pass per dispatch, each handed to
 * `onDispatch`; a pass for which `split` says false (given its encoder, device and descriptor)
 * is the real one.
 */
export function splitComputePasses(
  onDispatch: (dispatch: SplitDispatch) => void,
  split: (device: GPUDevice, d?: GPUComputePassDescriptor) => boolean = () => true,
): void {
  const encoderDevices = new WeakMap<GPUCommandEncoder, GPUDevice>();
  const createEncoder = GPUDevice.prototype.createCommandEncoder;
  GPUDevice.prototype.createCommandEncoder = function (d?: GPUCommandEncoderDescriptor) {
    const e = createEncoder.call(this, d);
    encoderDevices.set(e, this);
    return e;
  };
  const begin = GPUCommandEncoder.prototype.beginComputePass;
  GPUCommandEncoder.prototype.beginComputePass = function (d?: GPUComputePassDescriptor) {
    return splitPass(this, d);
  };
  function splitPass(encoder: GPUCommandEncoder, d?: GPUComputePassDescriptor) {
    const device = encoderDevices.get(encoder);
    if (!device || !split(device, d)) return begin.call(encoder, d);
    let pipeline: GPUComputePipeline | undefined;
    const groups = new Map<number, [GPUBindGroup, number[] | undefined]>();
    const dispatch = (grid: string, run: (own: GPUComputePassEncoder) => void) =>
      onDispatch({
        encoder,
        device,
        pipeline: pipeline!,
        groups,
        grid,
        record(descriptor?: GPUComputePassDescriptor) {
          const own = begin.call(encoder, descriptor);
          own.setPipeline(pipeline!);
          for (const [i, [g, offsets]] of groups) own.setBindGroup(i, g, offsets);
          run(own);
          own.end();
        },
      });
    const pass = {
      setPipeline(p: GPUComputePipeline) {
        pipeline = p;
      },
      setBindGroup(i: number, g: GPUBindGroup, offsets?: number[]) {
        groups.set(i, [g, offsets ? [...offsets] : undefined]);
      },
      dispatchWorkgroups(x: number, y = 1, z = 1) {
        dispatch(`${x}x${y}x${z}`, (own) => own.dispatchWorkgroups(x, y, z));
      },
      // The wide passes, dispatched with arguments that a previous pass wrote.
      dispatchWorkgroupsIndirect(buffer: GPUBuffer, offset: number) {
        dispatch("indirect", (own) => own.dispatchWorkgroupsIndirect(buffer, offset));
      },
      end() {},
    };
    return pass as unknown as GPUComputePassEncoder;
  }
}
