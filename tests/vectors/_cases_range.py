"""The range cases (issue 10, point 1): finite float32 inputs at the edges of float32's range."""

import numpy as np


def build_range_cases(case):
    """Issue 10, point 1: finite float32 inputs at the edges of float32's range. dy is scaled
    like x's spread so that dx is O(1) and the tolerances see it."""
    c = case("sn2d_range_huge_1e19",
             "2d, |x| ~ 1e19 (squares beyond float32), dy ~ 1e19, train then eval, [2,3,4,4]",
             "SwitchNorm2d", 3)
    c.random_state(buffers="zero")
    c.dy_scale = 1e19
    c.float32_buffers = True
    c.forward("train", c.normal((2, 3, 4, 4), 1e19))
    c.forward("eval", c.normal((2, 3, 4, 4), 1e19, 2e18))

    c = case("sn2d_range_spread_3e38",
             "2d, x uniform over +-3e38 (differences and sums beyond float32), dy ~ 1e37, one train "
             "step; running_var (~3e76) is +Infinity in float32 buffers, as in PyTorch's, [2,2,2,2]",
             "SwitchNorm2d", 2)
    c.random_state(buffers="zero")
    c.dy_scale = 1e37
    c.float32_buffers = True
    c.forward("train", c.uniform((2, 2, 2, 2), -3e38, 3e38))

    c = case("sn2d_range_tiny_eps0",
             "2d, eps=0, x = [1e-20, -1e-20, 2e-20, -2e-20] (variance 3.3e-40, a float32 "
             "subnormal), SwitchNorm2d(1) on [1,1,1,4], default state", "SwitchNorm2d", 1, eps=0.0)
    c.default_state()
    c.dy_scale = 1e-20
    c.forward("train", np.array([1e-20, -1e-20, 2e-20, -2e-20], np.float32).reshape(1, 1, 1, 4))

    c = case("sn2d_range_tiny_eps0_unit_dy",
             "2d, eps=0, the same x as sn2d_range_tiny_eps0 with dy ~ N(0, 1): dx ~ 1e20 (its "
             "float32 constants s^3 sum dy (x - mu) overflow unless scaled)", "SwitchNorm2d", 1,
             eps=0.0)
    c.default_state()
    c.forward("train", np.array([1e-20, -1e-20, 2e-20, -2e-20], np.float32).reshape(1, 1, 1, 4))

    c = case("sn2d_range_subnormal_squares_eps0",
             "2d, eps=0, x ~ 1e-25 (squared deviations underflow float32), train then eval "
             "(running_var ~ 1e-50 is 0 in float32 buffers, as in PyTorch's), [2,3,3,3]", "SwitchNorm2d", 3, eps=0.0)
    c.random_state(buffers="zero")
    c.dy_scale = 1e-25
    c.float32_buffers = True
    c.forward("train", c.normal((2, 3, 3, 3), 1e-25))
    c.forward("eval", c.normal((2, 3, 3, 3), 1e-25))

    c = case("sn1d_range_huge_1e19",
             "1d, |x| ~ 1e19, dy ~ 1e19, train then eval, [6,5]", "SwitchNorm1d", 5)
    c.random_state(buffers="zero")
    c.dy_scale = 1e19
    c.float32_buffers = True
    c.forward("train", c.normal((6, 5), 1e19))
    c.forward("eval", c.normal((6, 5), 1e19))

    c = case("sn1d_range_tiny_eps0",
             "1d, eps=0, x ~ 1e-25 (squared deviations underflow float32), train, [6,5]",
             "SwitchNorm1d", 5, eps=0.0)
    c.random_state(buffers="zero")
    c.dy_scale = 1e-25
    c.forward("train", c.normal((6, 5), 1e-25))
