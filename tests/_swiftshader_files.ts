/**
 * The test files that tests/swiftshader_range_test.ts runs in headless Chromium, whose WebGPU is
 * SwiftShader (it flushes subnormals as NVIDIA's Vulkan driver does): each loads when its loader
 * is called (the bundle keeps every file's tests apart until then), so the page can tell which
 * file registered which test. Loading one registers its tests with the page's Deno.test.
 *
 * @module
 */

/**
 * File name to loader, in the order the page runs them: the files of tests/device/files.txt (the
 * range tests run on the first real GPU) but four. Left out: `webgpu_select_test.ts` (it reads
 * bench/crossover.json and the shaders from disk, and judges the auto rule, not numerics),
 * `webgpu_resident_test.ts` (resident tensors, not numerics; no test name says WebGPU, so the
 * page's filter takes none), `webgpu_row_blocks_test.ts` (layouts under lowered binding limits:
 * each test compiles pipelines of its own, 148 s for the first under SwiftShader),
 * `wide_list_loop_test.ts` (its one WebGPU test, many wide rows and a long one, ran past the
 * page's 300 s guard under SwiftShader).
 */
export const FILES: Record<string, () => Promise<unknown>> = {
  "anchored_mean_test.ts": () => import("./anchored_mean_test.ts"),
  "batch_average_test.ts": () => import("./batch_average_test.ts"),
  "bn_mean_below_std_test.ts": () => import("./bn_mean_below_std_test.ts"),
  "cancelled_group_blocks_test.ts": () => import("./cancelled_group_blocks_test.ts"),
  "cancelled_wide_mean_test.ts": () => import("./cancelled_wide_mean_test.ts"),
  "close_stats_training_test.ts": () => import("./close_stats_training_test.ts"),
  "close_variance_test.ts": () => import("./close_variance_test.ts"),
  "far_anchor_mean_test.ts": () => import("./far_anchor_mean_test.ts"),
  "far_centre_test.ts": () => import("./far_centre_test.ts"),
  "far_mean_low_word_test.ts": () => import("./far_mean_low_word_test.ts"),
  "far_mean_test.ts": () => import("./far_mean_test.ts"),
  "fine_mean_test.ts": () => import("./fine_mean_test.ts"),
  "group_refine_test.ts": () => import("./group_refine_test.ts"),
  "logit_dot_range_test.ts": () => import("./logit_dot_range_test.ts"),
  "mean_below_unit_test.ts": () => import("./mean_below_unit_test.ts"),
  "narrow_scaled_row_cancel_test.ts": () => import("./narrow_scaled_row_cancel_test.ts"),
  "near_unit_data_test.ts": () => import("./near_unit_data_test.ts"),
  "one_sign_dy_test.ts": () => import("./one_sign_dy_test.ts"),
  "partial_zero_rows_test.ts": () => import("./partial_zero_rows_test.ts"),
  "range_property_test.ts": () => import("./range_property_test.ts"),
  "running_update_test.ts": () => import("./running_update_test.ts"),
  "running_var_rounding_test.ts": () => import("./running_var_rounding_test.ts"),
  "scaled_variance_pairs_test.ts": () => import("./scaled_variance_pairs_test.ts"),
  "shape_coinciding_test.ts": () => import("./shape_coinciding_test.ts"),
  "sn1d_eval_quantized_dx_test.ts": () => import("./sn1d_eval_quantized_dx_test.ts"),
  "sn1d_flushed_pair_mean_test.ts": () => import("./sn1d_flushed_pair_mean_test.ts"),
  "sn1d_hot_cancel_test.ts": () => import("./sn1d_hot_cancel_test.ts"),
  "sn1d_small_xc_test.ts": () => import("./sn1d_small_xc_test.ts"),
  "sn1d_subnormal_mean_test.ts": () => import("./sn1d_subnormal_mean_test.ts"),
  "spike_shift_test.ts": () => import("./spike_shift_test.ts"),
  "std_zero_test.ts": () => import("./std_zero_test.ts"),
  "subnormal_dy_dx_test.ts": () => import("./subnormal_dy_dx_test.ts"),
  "subnormal_dy_segment_test.ts": () => import("./subnormal_dy_segment_test.ts"),
  "subnormal_gamma_huge_dy_test.ts": () => import("./subnormal_gamma_huge_dy_test.ts"),
  "sync_subnormal_mean_test.ts": () => import("./sync_subnormal_mean_test.ts"),
  "tiny_products_test.ts": () => import("./tiny_products_test.ts"),
  "tiny_variance_mix_test.ts": () => import("./tiny_variance_mix_test.ts"),
  "wasm_precision_test.ts": () => import("./wasm_precision_test.ts"),
  "wasm_range_fuzz_cases_test.ts": () => import("./wasm_range_fuzz_cases_test.ts"),
  "wide_group_mix_test.ts": () => import("./wide_group_mix_test.ts"),
  "wide_row_far_terms_test.ts": () => import("./wide_row_far_terms_test.ts"),
  "wide_row_fine_mean_eval_test.ts": () => import("./wide_row_fine_mean_eval_test.ts"),
  "wide_row_mean_pairs_test.ts": () => import("./wide_row_mean_pairs_test.ts"),
  "zero_dy_row_test.ts": () => import("./zero_dy_row_test.ts"),
  "zero_member_unit_test.ts": () => import("./zero_member_unit_test.ts"),
  "zero_weight_jacobian_test.ts": () => import("./zero_weight_jacobian_test.ts"),
};
