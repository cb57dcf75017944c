"""The SwitchNorm1d/2d/3d cases (build_cases): one Case per vector file, with its seeds and steps."""

import numpy as np

from _case import Case
from _cases_range import build_range_cases


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

def offset_input(c, shape, base, step):
    """x[n, c, ...] = base + step*c + N(0, 1), drawn in float64, stored as float32."""
    C = shape[1]
    off = (base + step * np.arange(C, dtype=np.float64)).reshape((1, C) + (1,) * (len(shape) - 2))
    return (off + c.rng.standard_normal(shape)).astype(np.float32)


def with_nonfinite(x, nan_at, inf_at):
    x = x.copy()
    x[nan_at] = np.float32("nan")
    x[inf_at] = np.float32("inf")
    return x


def build_cases():
    cases = []

    def case(*a, **kw):
        c = Case(*a, **kw)
        cases.append(c)
        return c

    # ---------------- SwitchNorm2d ----------------
    c = case("sn2d_train_default_state",
             "2d, reference initial state (weight 1, bias 0, logits 1, zero buffers), one EMA train "
             "step, M=15", "SwitchNorm2d", 4)
    c.default_state()
    c.forward("train", c.normal((2, 4, 3, 5)))

    c = case("sn2d_train_ema_basic",
             "2d, random parameters and random buffers, one train step with moving average, M=3x5",
             "SwitchNorm2d", 4)
    c.random_state()
    c.forward("train", c.normal((2, 4, 3, 5), 1.5, 0.3))

    c = case("sn2d_train_ema_3steps",
             "2d, three consecutive EMA train steps on one layer (running stats compound), then an "
             "eval step, M=7x7", "SwitchNorm2d", 5)
    c.random_state(buffers="zero")
    for _ in range(3):
        c.forward("train", c.normal((3, 5, 7, 7), 2.0, 0.5))
    c.forward("eval", c.normal((2, 5, 7, 7), 2.0, 0.5))

    c = case("sn2d_eval_basic",
             "2d, eval mode with random nonzero running buffers, random parameters, M=3x5",
             "SwitchNorm2d", 4)
    c.random_state()
    c.forward("eval", c.normal((2, 4, 3, 5), 1.5, -0.2))

    c = case("sn2d_batchavg_3steps",
             "2d, batch average: 3 train steps with usingMovingAverage=false from zero buffers, "
             "finalizeBatchAverage, then eval with the finalized buffers, M=1x13",
             "SwitchNorm2d", 6, using_moving_average=False)
    c.random_state(buffers="zero")
    for i in range(3):
        c.forward("train", c.normal((2, 6, 1, 13), 1.0 + 0.5 * i, 0.2 * i))
    c.finalize()
    c.forward("eval", c.normal((3, 6, 1, 13), 1.5, 0.2))

    c = case("sn2d_train_nobn",
             "2d, usingBN=false (IN+LN only, 2 logits, no running buffers), train, M=4x8",
             "SwitchNorm2d", 3, using_bn=False)
    c.random_state()
    c.forward("train", c.normal((2, 3, 4, 8), 1.2, 0.4))

    c = case("sn2d_eval_nobn",
             "2d, usingBN=false, a train step then an eval step (identical semantics), M=3x5",
             "SwitchNorm2d", 4, using_bn=False)
    c.random_state()
    c.forward("train", c.normal((3, 4, 3, 5)))
    c.forward("eval", c.normal((3, 4, 3, 5)))

    c = case("sn2d_train_lastgamma",
             "2d, lastGamma=true: weight zeros as the reference initialises it, random bias/logits, "
             "so y equals bias; running buffers still update; M=3x5", "SwitchNorm2d", 4,
             last_gamma=True)
    c.random_state(buffers="zero")
    c.forward("train", c.normal((2, 4, 3, 5)))

    c = case("sn2d_train_c1", "2d, C=1 (LN statistics equal IN statistics), train then eval, M=4x5",
             "SwitchNorm2d", 1)
    c.random_state()
    c.forward("train", c.normal((3, 1, 4, 5), 1.3, 0.7))
    c.forward("eval", c.normal((3, 1, 4, 5), 1.3, 0.7))

    c = case("sn2d_train_n1", "2d, N=1 in training (BN statistics from one sample), M=3x7",
             "SwitchNorm2d", 5)
    c.random_state()
    c.forward("train", c.normal((1, 5, 3, 7), 1.1))

    c = case("sn2d_eval_n1", "2d, N=1 in eval with random buffers, M=3x7", "SwitchNorm2d", 5)
    c.random_state()
    c.forward("eval", c.normal((1, 5, 3, 7), 1.1))

    c = case("sn2d_train_m1_nan",
             "2d, H=W=1 (M=1): unbiased var_in is 0/0 = NaN, so y is all NaN and running_var "
             "becomes NaN (running_mean stays finite)", "SwitchNorm2d", 3)
    c.random_state()
    c.forward("train", c.normal((4, 3, 1, 1)))

    c = case("sn2d_eval_m1_nan",
             "2d, H=W=1 (M=1) in eval: var_in and var_ln are NaN, y all NaN, buffers unchanged",
             "SwitchNorm2d", 3)
    c.random_state()
    c.forward("eval", c.normal((4, 3, 1, 1)))

    c = case("sn2d_train_large_offset",
             "2d, large positive means: x = 1e4 + 37*c + N(0,1), two EMA train steps, M=5x7",
             "SwitchNorm2d", 4)
    c.random_state(buffers="zero")
    c.forward("train", offset_input(c, (2, 4, 5, 7), 1e4, 37.0))
    c.forward("train", offset_input(c, (2, 4, 5, 7), 1e4, 37.0))

    c = case("sn2d_eval_large_offset",
             "2d, eval with x = 1e4 + 37*c + N(0,1) and running_mean near the channel means, "
             "M=5x7", "SwitchNorm2d", 4)
    c.random_state()
    c.state["running_mean"] = (1e4 + 37.0 * np.arange(4) + 0.1 * c.rng.standard_normal(4)
                               ).astype(np.float32)
    c.state["running_var"] = c.uniform(4, 0.5, 1.5)
    c.forward("eval", offset_input(c, (2, 4, 5, 7), 1e4, 37.0))

    c = case("sn2d_train_negative_offset",
             "2d, large negative means: x = -1e4 - 37*c + N(0,1), train then eval, M=3x5",
             "SwitchNorm2d", 3)
    c.random_state(buffers="zero")
    c.forward("train", offset_input(c, (3, 3, 3, 5), -1e4, -37.0))
    c.forward("eval", offset_input(c, (3, 3, 3, 5), -1e4, -37.0))

    c = case("sn2d_train_nonfinite",
             "2d train, one NaN at (n0,c1) and one +Inf at (n1,c2): NaN spreads to samples 0,1 "
             "(IN/LN) and channels 1,2 (BN); running_mean becomes NaN (c1) and +Infinity (c2), "
             "running_var NaN (c1, c2); M=3x5",
             "SwitchNorm2d", 4)
    c.random_state()
    x = c.normal((3, 4, 3, 5))
    c.forward("train", with_nonfinite(x, (0, 1, 1, 2), (1, 2, 2, 0)))

    c = case("sn2d_eval_nonfinite",
             "2d eval, one NaN at (n0,c1) and one +Inf at (n1,c2): only samples 0 and 1 become NaN "
             "(BN statistics are the buffers); M=3x5", "SwitchNorm2d", 4)
    c.random_state()
    x = c.normal((3, 4, 3, 5))
    c.forward("eval", with_nonfinite(x, (0, 1, 1, 2), (1, 2, 2, 0)))

    c = case("sn2d_train_eps_momentum",
             "2d, eps=1e-3 and momentum=0.5, two EMA train steps then eval, small-variance input, "
             "M=2x6", "SwitchNorm2d", 4, eps=1e-3, momentum=0.5)
    c.random_state(buffers="zero")
    c.forward("train", c.normal((2, 4, 2, 6), 0.05, 0.1))
    c.forward("train", c.normal((2, 4, 2, 6), 0.05, 0.1))
    c.forward("eval", c.normal((2, 4, 2, 6), 0.05, 0.1))

    c = case("sn2d_train_hw4x8", "2d, M=4x8=32 (multiple of 8), EMA train then eval",
             "SwitchNorm2d", 6)
    c.random_state()
    c.forward("train", c.normal((2, 6, 4, 8), 0.8, 1.0))
    c.forward("eval", c.normal((2, 6, 4, 8), 0.8, 1.0))

    c = case("sn2d_train_larger", "2d, moderately larger [4,8,9,11] (M=99), EMA train step",
             "SwitchNorm2d", 8)
    c.random_state()
    c.forward("train", c.normal((4, 8, 9, 11), 1.7, -0.3))

    # ---------------- SwitchNorm3d ----------------
    c = case("sn3d_train_ema_3steps",
             "3d, three EMA train steps (default momentum 0.997) from random buffers, M=2x3x5=30",
             "SwitchNorm3d", 3)
    c.random_state()
    for _ in range(3):
        c.forward("train", c.normal((2, 3, 2, 3, 5), 1.4, 0.6))

    c = case("sn3d_eval_basic", "3d, eval with random buffers and parameters, M=2x3x5=30",
             "SwitchNorm3d", 4)
    c.random_state()
    c.forward("eval", c.normal((2, 4, 2, 3, 5)))

    c = case("sn3d_train_nobn", "3d, usingBN=false, train then eval, M=3x3x3=27", "SwitchNorm3d", 3,
             using_bn=False)
    c.random_state()
    c.forward("train", c.normal((2, 3, 3, 3, 3), 0.9, 0.2))
    c.forward("eval", c.normal((2, 3, 3, 3, 3), 0.9, 0.2))

    c = case("sn3d_batchavg_3steps",
             "3d, batch average: 3 train steps (usingMovingAverage=false) from zero buffers, "
             "finalizeBatchAverage, eval, M=2x2x8=32", "SwitchNorm3d", 3,
             using_moving_average=False)
    c.random_state(buffers="zero")
    for i in range(3):
        c.forward("train", c.normal((2, 3, 2, 2, 8), 1.0 + 0.3 * i, -0.4 * i))
    c.finalize()
    c.forward("eval", c.normal((2, 3, 2, 2, 8), 1.2, -0.4))

    c = case("sn3d_train_n1", "3d, N=1 in training, M=1x3x7=21", "SwitchNorm3d", 4)
    c.random_state()
    c.forward("train", c.normal((1, 4, 1, 3, 7), 1.2, 0.1))

    c = case("sn3d_train_lastgamma_momentum",
             "3d, lastGamma=true (weight zeros) with momentum=0.5, two train steps, M=2x2x3=12",
             "SwitchNorm3d", 2, momentum=0.5, last_gamma=True)
    c.random_state(buffers="zero")
    c.forward("train", c.normal((3, 2, 2, 2, 3)))
    c.forward("train", c.normal((3, 2, 2, 2, 3)))

    c = case("sn3d_train_large_offset",
             "3d, large negative means x = -1e4 - 37*c + N(0,1), train then eval, M=2x3x5=30",
             "SwitchNorm3d", 3)
    c.random_state(buffers="zero")
    c.forward("train", offset_input(c, (2, 3, 2, 3, 5), -1e4, -37.0))
    c.forward("eval", offset_input(c, (2, 3, 2, 3, 5), -1e4, -37.0))

    # ---------------- SwitchNorm1d ----------------
    c = case("sn1d_train_ema_basic", "1d, random parameters and buffers, one EMA train step, [4,6]",
             "SwitchNorm1d", 6)
    c.random_state()
    c.forward("train", c.normal((4, 6), 1.3, 0.2))

    c = case("sn1d_train_ema_3steps",
             "1d, three EMA train steps (momentum 0.997) from zero buffers, then eval, [5,7]",
             "SwitchNorm1d", 7)
    c.random_state(buffers="zero")
    for _ in range(3):
        c.forward("train", c.normal((5, 7), 1.5, 0.4))
    c.forward("eval", c.normal((5, 7), 1.5, 0.4))

    c = case("sn1d_eval_basic", "1d, eval with random buffers and parameters, [4,6]",
             "SwitchNorm1d", 6)
    c.random_state()
    c.forward("eval", c.normal((4, 6), 1.3, 0.2))

    c = case("sn1d_batchavg_3steps",
             "1d, batch average: 3 train steps (usingMovingAverage=false) from zero buffers, "
             "finalizeBatchAverage, eval, [6,5]", "SwitchNorm1d", 5, using_moving_average=False)
    c.random_state(buffers="zero")
    for i in range(3):
        c.forward("train", c.normal((6, 5), 1.0 + 0.4 * i, 0.3 * i))
    c.finalize()
    c.forward("eval", c.normal((6, 5), 1.4, 0.3))

    c = case("sn1d_train_n1_nan",
             "1d, N=1 in training: unbiased var_bn over N is 0/0 = NaN, y all NaN, running_var NaN "
             "(running_mean finite)", "SwitchNorm1d", 5)
    c.random_state()
    c.forward("train", c.normal((1, 5)))

    c = case("sn1d_eval_n1", "1d, N=1 in eval (BN statistics from the buffers: finite), [1,5]",
             "SwitchNorm1d", 5)
    c.random_state()
    c.forward("eval", c.normal((1, 5)))

    c = case("sn1d_train_c1_nan",
             "1d, C=1: unbiased var_ln over C is 0/0 = NaN, so y is all NaN (train); buffers "
             "still update finitely", "SwitchNorm1d", 1)
    c.random_state()
    c.forward("train", c.normal((4, 1)))

    c = case("sn1d_eval_c1_nan", "1d, C=1 in eval: var_ln NaN, y all NaN, buffers unchanged",
             "SwitchNorm1d", 1)
    c.random_state()
    c.forward("eval", c.normal((4, 1)))

    c = case("sn1d_train_large", "1d, larger [16,37], EMA train then eval", "SwitchNorm1d", 37)
    c.random_state()
    c.forward("train", c.normal((16, 37), 2.0, -0.5))
    c.forward("eval", c.normal((16, 37), 2.0, -0.5))

    c = case("sn1d_train_large_offset",
             "1d, large means x = 1e4 + 37*c + N(0,1), train then eval, [8,5]", "SwitchNorm1d", 5)
    c.random_state(buffers="zero")
    c.forward("train", offset_input(c, (8, 5), 1e4, 37.0))
    c.forward("eval", offset_input(c, (8, 5), 1e4, 37.0))

    c = case("sn1d_train_eps_momentum",
             "1d, eps=1e-3 and momentum=0.5, two EMA train steps, small-variance input, [6,4]",
             "SwitchNorm1d", 4, eps=1e-3, momentum=0.5)
    c.random_state(buffers="zero")
    c.forward("train", c.normal((6, 4), 0.05, -0.1))
    c.forward("train", c.normal((6, 4), 0.05, -0.1))

    c = case("sn1d_train_nonfinite",
             "1d train, one NaN at (n0,c1) and one +Inf at (n2,c3): rows 0,2 and columns 1,3 become "
             "NaN; running_mean becomes NaN (c1) and +Infinity (c3), running_var NaN (c1, c3); "
             "[4,5]", "SwitchNorm1d", 5)
    c.random_state()
    x = c.normal((4, 5))
    c.forward("train", with_nonfinite(x, (0, 1), (2, 3)))

    c = case("sn1d_eval_nonfinite",
             "1d eval, one NaN at (n0,c1) and one +Inf at (n2,c3): only rows 0 and 2 of y and dx "
             "become NaN (BN statistics are the buffers, constants); buffers unchanged; [4,5]",
             "SwitchNorm1d", 5)
    c.random_state()
    x = c.normal((4, 5))
    c.forward("eval", with_nonfinite(x, (0, 1), (2, 3)))

    # ---------------- NaN and infinities in dy (x finite) ----------------
    # The reference's dx and gradients are NaN wherever a NaN or both infinities reach a sum,
    # and an infinity where one alone does; the rest stays finite. Backends must not take a
    # non-finite dy for a huge finite one (the wide paths for |dy| > 2^40).
    nan, inf = float("nan"), float("inf")
    dy_2d = {(1, 1, 1, 2): nan, (1, 2, 0, 0): inf, (1, 2, 2, 3): inf, (1, 0, 2, 4): -inf}
    dy_1d = {(0, 1): nan, (2, 3): inf, (3, 0): -inf}
    for mode in ("train", "eval"):
        c = case(f"sn2d_{mode}_dy_nonfinite",
                 f"2d {mode}, finite x, dy with one NaN at (n1,c1), two +Inf in row (n1,c2) and "
                 "one -Inf at (n1,c0): NaN and infinities in dx and the gradients where the "
                 "reference has them, samples 0 and 2 finite; "
                 "M=3x5" + ("; usingBN false: with BN the infinities reach every sample, where "
                            "PyTorch's var_bn = mean(var_in + mu_in^2) - mu_bn^2 makes Inf - Inf "
                            "that SN_SPEC's folded form does not" if mode == "train" else ""),
                 "SwitchNorm2d", 4, using_bn=(mode == "eval"))
        c.random_state()
        c.forward(mode, c.normal((3, 4, 3, 5)), dy_at=dy_2d)
        c = case(f"sn1d_{mode}_dy_nonfinite",
                 f"1d {mode}, finite x, dy with one NaN at (n0,c1), +Inf at (n2,c3) and -Inf at "
                 "(n3,c0); [4,5]", "SwitchNorm1d", 5)
        c.random_state()
        c.forward(mode, c.normal((4, 5)), dy_at=dy_1d)
    c = case("sn2d_train_dy_nonfinite_wide",
             "2d train, dy ~ 1e20 (|dy| beyond 2^40: wide rows) with the NaN and infinities of "
             "sn2d_train_dy_nonfinite; usingBN false (as there); M=3x5", "SwitchNorm2d", 4, using_bn=False)
    c.random_state()
    c.dy_scale = 1e20
    c.forward("train", c.normal((3, 4, 3, 5)), dy_at=dy_2d)
    c = case("sn1d_train_dy_nonfinite_wide",
             "1d train, dy ~ 1e20 (|dy| beyond 2^40: wide elements) with one NaN at (n0,c1), "
             "+Inf at (n2,c3) and -Inf at (n3,c0); [4,5]", "SwitchNorm1d", 5)
    c.random_state()
    c.dy_scale = 1e20
    c.forward("train", c.normal((4, 5)), dy_at=dy_1d)
    c = case("sn3d_train_dy_inf_long_rows",
             "3d train, rows of 4225 (longer than one 4096-element segment), dy with +Inf at both "
             "ends of row (n1,c0) (two segments): NaN where the reference has it, channel 1 of "
             "sample 0 finite; [2,2,1,65,65]", "SwitchNorm3d", 2)
    c.random_state()
    c.forward("train", c.normal((2, 2, 1, 65, 65)),
              dy_at={(1, 0, 0, 3, 4): inf, (1, 0, 0, 64, 64): inf})

    build_range_cases(case)
    return cases
