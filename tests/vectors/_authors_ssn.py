"""The port of the authors' Sparse SN: SSN2d and regulated_sparsemax (switchablenorms/
Sparse_SwitchNorm), transcribed from their code, with its K = 2 extension and SSN1d."""

import math

import torch
import torch.nn as nn


# ---------------------------------------------------------------------------------------------
# Sparse SN: a port of the authors' SSN2d and regulated_sparsemax (switchablenorms/
# Sparse_SwitchNorm, utils/sparse_switchable_norm.py and utils/ssn_utils.py), transcribed from
# their code, not from the library's. Differences, each marked "(port)" where it is made:
# - the input rank is a class constant, so that the same module serves 2d and 3d;
# - K = 2 logits (usingBN false, and SwitchNorm1d) go beyond their code, which is written for 3:
#   regulated_sparsemax_k2 is SN_SPEC's extension (u = 1/2, no edge step), not theirs;
# - regulated_sparsemax does not shift the logits by their max as the library does; the vectors
#   keep logits small, where the shift changes nothing beyond rounding.
# ---------------------------------------------------------------------------------------------

def regulated_sparsemax(v, rad=0, z=1):
    v_sorted, ind_sorted = torch.sort(v, dim=0, descending=True)
    cssv = torch.cumsum(v_sorted, dim=0) - z
    ind = torch.arange(1, 1 + len(v)).float().to(v.device)
    cond = v_sorted - cssv / ind > 0
    rho = ind.masked_select(cond)[-1]
    tau = cssv.masked_select(cond)[-1] / rho
    w = torch.clamp(v - tau, min=0)

    u = torch.tensor(1/3).to(v.device)
    distance = torch.sum((w-u)**2)**(1/2)
    if distance >= rad:
        return w
    if distance < 1e-6:
        distance = distance.detach()
    p = rad*(w-u)/(distance+1e-6)+u

    if p[ind_sorted[2]] < 0:
        p[ind_sorted[0]] = (1+math.sqrt(2)*rad*math.sin(math.acos(1/(math.sqrt(6)*rad))))/2
        p[ind_sorted[1]] = (1-math.sqrt(2)*rad*math.sin(math.acos(1/(math.sqrt(6)*rad))))/2
        p[ind_sorted[2]] = 0
    p.clamp_(min=0, max=1)
    return p


def regulated_sparsemax_k2(v, rad=0, z=1):
    """(port) SN_SPEC's K = 2 extension: regulated_sparsemax with u = 1/2 and no edge step (the
    clamp takes p to the vertex of the larger logit)."""
    assert len(v) == 2
    v_sorted, _ = torch.sort(v, dim=0, descending=True)
    cssv = torch.cumsum(v_sorted, dim=0) - z
    ind = torch.arange(1, 1 + len(v)).to(v)
    cond = v_sorted - cssv / ind > 0
    rho = ind.masked_select(cond)[-1]
    tau = cssv.masked_select(cond)[-1] / rho
    w = torch.clamp(v - tau, min=0)
    u = 1 / 2
    distance = torch.sum((w - u) ** 2) ** (1 / 2)
    if distance >= rad:
        return w
    if distance < 1e-6:
        distance = distance.detach()
    p = rad * (w - u) / (distance + 1e-6) + u
    return p.clamp(min=0, max=1)


def sparse_map(v, rad):
    return regulated_sparsemax(v, rad) if len(v) == 3 else regulated_sparsemax_k2(v, rad)


def fix_logits(param):
    """SSN2d's freeze of one mixing: the largest logit becomes 1, the others 0 (for K = 3 this is
    their three fill_ calls; (port) written as a loop so that K = 2 works too)."""
    _, ind = torch.sort(param, dim=0, descending=True)
    param[ind[0]].data.fill_(1)
    for i in ind[1:]:
        param[i].data.fill_(0)


class _SSNNd(nn.Module):
    """The authors' SSN2d; (port) DIM is the input rank (4: SSN2d, 5: the same layer in 3d)."""

    DIM = None

    def __init__(self, num_features, eps=1e-5, momentum=0.997, using_moving_average=True,
                 using_bn=True, last_gamma=False):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.using_moving_average = using_moving_average
        self.using_bn = using_bn
        self.last_gamma = last_gamma
        pshape = (1, num_features) + (1,) * (self.DIM - 2)  # (port)
        self.weight = nn.Parameter(torch.ones(*pshape))
        self.bias = nn.Parameter(torch.zeros(*pshape))
        if self.using_bn:
            self.mean_weight = nn.Parameter(torch.ones(3))
            self.var_weight = nn.Parameter(torch.ones(3))
        else:
            self.mean_weight = nn.Parameter(torch.ones(2))
            self.var_weight = nn.Parameter(torch.ones(2))
        if self.using_bn:
            self.register_buffer("running_mean", torch.zeros(1, num_features, 1))
            self.register_buffer("running_var", torch.zeros(1, num_features, 1))

        self.rad = 0.
        self.register_buffer("mean_fixed", torch.LongTensor([0]))
        self.register_buffer("var_fixed", torch.LongTensor([0]))
        self.register_buffer("radius", torch.zeros(1))

        self.reset_parameters()

    def reset_parameters(self):
        if self.using_bn:
            self.running_mean.zero_()
            self.running_var.zero_()
        if self.last_gamma:
            self.weight.data.fill_(0)
        else:
            self.weight.data.fill_(1)
        self.mean_fixed.data.fill_(0)
        self.var_fixed.data.fill_(0)
        self.bias.data.zero_()

    def forward(self, x):
        if x.dim() != self.DIM:
            raise ValueError("expected {}D input (got {}D input)".format(self.DIM, x.dim()))
        size = x.size()  # (port)
        N, C = size[0], size[1]
        x = x.view(N, C, -1)
        mean_in = x.mean(-1, keepdim=True)
        var_in = x.var(-1, keepdim=True)

        mean_ln = mean_in.mean(1, keepdim=True)
        temp = var_in + mean_in ** 2
        var_ln = temp.mean(1, keepdim=True) - mean_ln ** 2

        if self.using_bn:
            if self.training:
                mean_bn = mean_in.mean(0, keepdim=True)
                var_bn = temp.mean(0, keepdim=True) - mean_bn ** 2
                if self.using_moving_average:
                    self.running_mean.mul_(self.momentum)
                    self.running_mean.add_((1 - self.momentum) * mean_bn.data)
                    self.running_var.mul_(self.momentum)
                    self.running_var.add_((1 - self.momentum) * var_bn.data)
                else:
                    self.running_mean.add_(mean_bn.data)
                    self.running_var.add_(mean_bn.data ** 2 + var_bn.data)
            else:
                mean_bn = torch.autograd.Variable(self.running_mean)
                var_bn = torch.autograd.Variable(self.running_var)

        if not self.mean_fixed:
            self.mean_weight_ = sparse_map(self.mean_weight, self.rad)
            if max(self.mean_weight_) - min(self.mean_weight_) >= 1:
                self.mean_fixed.data.fill_(1)
                fix_logits(self.mean_weight)
                self.mean_weight.grad = None
                self.mean_weight_ = self.mean_weight.detach()
        else:
            self.mean_weight_ = self.mean_weight.detach()

        if not self.var_fixed:
            self.var_weight_ = sparse_map(self.var_weight, self.rad)
            if max(self.var_weight_) - min(self.var_weight_) >= 1:
                self.var_fixed.data.fill_(1)
                fix_logits(self.var_weight)
                self.var_weight.grad = None
                self.var_weight_ = self.var_weight.detach()
        else:
            self.var_weight_ = self.var_weight.detach()

        if self.using_bn:
            mean = (self.mean_weight_[0] * mean_in + self.mean_weight_[1] * mean_ln
                    + self.mean_weight_[2] * mean_bn)
            var = (self.var_weight_[0] * var_in + self.var_weight_[1] * var_ln
                   + self.var_weight_[2] * var_bn)
        else:
            mean = self.mean_weight_[0] * mean_in + self.mean_weight_[1] * mean_ln
            var = self.var_weight_[0] * var_in + self.var_weight_[1] * var_ln

        x = (x - mean) / (var + self.eps).sqrt()
        x = x.view(size)  # (port)
        return x * self.weight + self.bias

    def set_rad(self, rad):
        self.radius[0].fill_(rad)
        self.rad = torch.squeeze(self.radius)


class SSN2d(_SSNNd):
    DIM = 4


class SSN3d(_SSNNd):
    DIM = 5


class SSN1d(nn.Module):
    """(port) SwitchNorm1d with SSN2d's sparse mixing (K = 2, the extension): the reference
    SwitchNorm1d's statistics, SSN2d's map, freeze and buffers."""

    def __init__(self, num_features, eps=1e-5, momentum=0.997, using_moving_average=True):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.using_moving_average = using_moving_average
        self.weight = nn.Parameter(torch.ones(1, num_features))
        self.bias = nn.Parameter(torch.zeros(1, num_features))
        self.mean_weight = nn.Parameter(torch.ones(2))
        self.var_weight = nn.Parameter(torch.ones(2))
        self.register_buffer("running_mean", torch.zeros(1, num_features))
        self.register_buffer("running_var", torch.zeros(1, num_features))
        self.rad = 0.
        self.register_buffer("mean_fixed", torch.LongTensor([0]))
        self.register_buffer("var_fixed", torch.LongTensor([0]))
        self.register_buffer("radius", torch.zeros(1))

    def forward(self, x):
        mean_ln = x.mean(1, keepdim=True)
        var_ln = x.var(1, keepdim=True)
        if self.training:
            mean_bn = x.mean(0, keepdim=True)
            var_bn = x.var(0, keepdim=True)
            if self.using_moving_average:
                self.running_mean.mul_(self.momentum)
                self.running_mean.add_((1 - self.momentum) * mean_bn.data)
                self.running_var.mul_(self.momentum)
                self.running_var.add_((1 - self.momentum) * var_bn.data)
            else:
                self.running_mean.add_(mean_bn.data)
                self.running_var.add_(mean_bn.data ** 2 + var_bn.data)
        else:
            mean_bn = self.running_mean
            var_bn = self.running_var
        weights = []
        for name in ("mean", "var"):
            param, fixed = getattr(self, name + "_weight"), getattr(self, name + "_fixed")
            if not fixed:
                w = sparse_map(param, self.rad)
                if max(w) - min(w) >= 1:
                    fixed.data.fill_(1)
                    fix_logits(param)
                    param.grad = None
                    w = param.detach()
            else:
                w = param.detach()
            weights.append(w)
        mean = weights[0][0] * mean_ln + weights[0][1] * mean_bn
        var = weights[1][0] * var_ln + weights[1][1] * var_bn
        x = (x - mean) / (var + self.eps).sqrt()
        return x * self.weight + self.bias

    set_rad = _SSNNd.set_rad


SPARSE_LAYERS = {"SwitchNorm1d": SSN1d, "SwitchNorm2d": SSN2d, "SwitchNorm3d": SSN3d}
SPARSE_STATE_KEYS = ("mean_fixed", "var_fixed", "radius")
