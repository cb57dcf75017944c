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

    # Rows whose float32 per-row factors or products leave float32's range while the float64
    # results fit (issue 10, point 1, second round): dx and y must be the float64 values, with
    # values beyond float32's largest as the infinity of their sign (`float32_range`).
    c = case("sn2d_range_dy_near_max",
             "2d, dy ~ N(0, 1) * 1e38 (|dy| up to 3.4e38): dy gamma / std passes float32's largest "
             "value; dx is finite where the float64 value fits, the infinity of its sign beyond, "
             "default state, train then eval, [3,2,2,2]", "SwitchNorm2d", 2)
    c.default_state()
    c.dy_scale = 1e38
    c.forward("train", c.normal((3, 2, 2, 2)))
    c.forward("eval", c.normal((3, 2, 2, 2)))

    c = case("sn2d_range_gamma_1e33_eps0",
             "2d, eps=0, weight 1e33, x ~ N(0, 3e-7): gamma / std (3e39) overflows float32 while y "
             "~ 1e33 fits; dx ~ 1e37..1e39; train then eval (running_var 1e-13), [2,1,2,4]",
             "SwitchNorm2d", 1, eps=0.0)
    c.default_state()
    c.state["weight"][:] = 1e33
    c.state["running_var"][:] = 1e-13
    c.forward("train", c.normal((2, 1, 2, 4), 3e-7))
    c.forward("eval", c.normal((2, 1, 2, 4), 3e-7))

    c = case("sn2d_range_tiny_std_gamma10_eps0",
             "2d, eps=0, x ~ N(0, 3e-38) (float32's normal/subnormal boundary), weight 10: dx ~ "
             "1e38, a factor 5 below float32's largest value, [2,1,2,4]", "SwitchNorm2d", 1,
             eps=0.0)
    c.default_state()
    c.state["weight"][:] = 10
    c.forward("train", c.normal((2, 1, 2, 4), 3e-38))

    c = case("sn2d_range_subnormal_x_eps0",
             "2d, eps=0, x ~ N(0, 3e-43) (subnormal): y is O(1), dx ~ 1e43 is beyond float32 (the "
             "infinity of its sign), [3,2,2,2]", "SwitchNorm2d", 2, eps=0.0)
    c.random_state(buffers="zero")
    c.float32_buffers = True
    c.forward("train", c.normal((3, 2, 2, 2), 3e-43))

    c = case("sn2d_range_gamma_beta_near_max",
             "2d, weight [3e38, -3e38], bias [-3e38, 3e38]: (x - mu) gamma / std passes float32's "
             "largest value while y = that + beta fits; train then eval, [3,2,2,2]",
             "SwitchNorm2d", 2)
    c.random_state()
    c.state["weight"][:] = [3e38, -3e38]
    c.state["bias"][:] = [-3e38, 3e38]
    c.forward("train", c.uniform((3, 2, 2, 2), -1, 1))
    c.forward("eval", c.uniform((3, 2, 2, 2), -1, 1))

    c = case("sn3d_range_gamma_1e33_eps0",
             "3d, eps=0, weight 1e33, x ~ N(0, 3e-7) (gamma / std beyond float32), dy ~ 1e-6, "
             "[2,2,2,2,3]", "SwitchNorm3d", 2, eps=0.0)
    c.random_state(buffers="zero")
    c.state["weight"][:] = 1e33
    c.dy_scale = 1e-6
    c.forward("train", c.normal((2, 2, 2, 2, 3), 3e-7))

    c = case("sn1d_range_gamma_1e33_eps0",
             "1d, eps=0, weight 1e33, x ~ N(0, 3e-7), dy ~ 1e-8: gamma / std beyond float32, "
             "train, [6,4]", "SwitchNorm1d", 4, eps=0.0)
    c.random_state(buffers="zero")
    c.state["weight"][:] = 1e33
    c.dy_scale = 1e-8
    c.forward("train", c.normal((6, 4), 3e-7))
