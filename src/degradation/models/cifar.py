"""The paper's 6n+2 CIFAR family (Section 4.2) and its 2016 redesigns: one unit class.

A net of depth 6n+2 is one 3x3 stem conv, three stages of n units (each two 3x3 convs, widths
w, 2w, 4w, stride 2 at the first conv of stages 2 and 3), global average pooling and one fully
connected layer. ``residual=True`` adds a shortcut around every unit; nothing else changes.
The design options (:data:`degradation.designs.OPTIONS`) make the designs of the paper's sequel
(He et al. 2016) and of the normalization-free residual nets that followed: ``block`` (post- or
full pre-activation), ``unit`` (basic or bottleneck, depth 9n+2), ``shortcut_variant`` (the 2016
paper's Table 1) and ``init`` (He, zero_last_bn, Fixup, SkipInit). With the defaults a
:class:`Unit` is the 2015 block, with the same parameter names, so earlier checkpoints load.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from degradation import paper
from degradation.designs import BY_KEY, Design, check_depth, check_design
from degradation.models.layers import (
    Gate,
    ScalarBias,
    check_sizes,
    conv3x3,
    he_init,
    make_shortcut,
    norm2d,
    variant_shortcut,
)
from degradation.rundirs import family

EXPANSION = paper.BOTTLENECK_EXPANSION


class Unit(nn.Module):
    """One residual (or plain) unit of the 2016 designs.

    - post-activation (``block=post``): conv-BN(-ReLU) per layer, ReLU after the addition;
      ``bn{i}`` follows ``conv{i}``.
    - full pre-activation (``block=preact``): BN-ReLU-conv per layer, nothing after the
      addition; ``bn{i}`` comes before ``conv{i}``. Where the shape changes, the shortcut takes
      the pre-activated input (BN-ReLU shared with the branch), as in the paper's code.
    - basic (``conv1``, ``conv2``: 3x3, 3x3) or bottleneck (``conv1``..``conv3``: 1x1 to
      ``out_channels // 4``, 3x3 carrying the stride, 1x1 to ``out_channels``).

    On a shape-keeping block the shortcut is the design's variant: ``scaling`` (lambda on the
    shortcut, 1 - lambda on the branch when ``scale_branch``), ``exclusive_gating``
    (g * F + (1 - g) * x), ``shortcut_gating`` (F + (1 - g) * x), ``conv1x1`` or ``dropout``;
    where the shape changes it is option A, B or C. ``init=fixup`` adds Fixup's scalar biases
    (before each conv and each ReLU of the branch, and after it) and a scalar multiplier;
    ``init=skipinit`` a scalar ``skip_gain`` on the branch. Plain units (no shortcut) output
    the branch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        residual: bool,
        design: Design | None = None,
    ) -> None:
        super().__init__()
        design = design or Design()
        self.preact = design.block == "preact"
        self.layers = m = design.layers
        self.init = design.init
        norm = design.norm
        bias = norm == "none" and design.init != "fixup"
        mid = out_channels // EXPANSION if m == 3 else out_channels
        if m == 3:
            shapes = [(in_channels, mid, 1, 1), (mid, mid, 3, stride), (mid, out_channels, 1, 1)]
        else:
            shapes = [(in_channels, out_channels, 3, stride), (out_channels, out_channels, 3, 1)]
        for i, (c_in, c_out, k, s) in enumerate(shapes, start=1):
            conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=bias)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bn{i}", norm2d(c_in if self.preact else c_out, norm))
        self.changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut: nn.Module | None = None
        self.gate: Gate | None = None
        self.exclusive = design.shortcut_variant == "exclusive_gating"
        self.branch_scale = 1.0
        if residual and (self.changes_shape or design.shortcut == "C"):
            self.shortcut = make_shortcut(design.shortcut, in_channels, out_channels, stride, norm)
        elif residual:
            self.shortcut = variant_shortcut(design, out_channels)
            if design.shortcut_variant in ("exclusive_gating", "shortcut_gating"):
                self.gate = Gate(out_channels, design.gate_bias)
            if design.shortcut_variant == "scaling" and design.scale_branch:
                self.branch_scale = 1.0 - float(design.shortcut_scale)
        if design.init == "fixup":
            count = 2 * m + (1 if self.preact else 0)
            self.fixup_bias = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in range(count))
            self.fixup_scale = nn.Parameter(torch.ones(1))
        if design.init == "skipinit":
            self.skip_gain = nn.Parameter(torch.zeros(1))

    def convs(self) -> list[nn.Conv2d]:
        """The branch's convs in forward order."""
        return [getattr(self, f"conv{i}") for i in range(1, self.layers + 1)]

    def norms(self) -> list[nn.Module]:
        """The branch's norm layers in forward order (identities without BN)."""
        return [getattr(self, f"bn{i}") for i in range(1, self.layers + 1)]

    def reset_parameters(self, branches: int) -> None:
        """The design's init on top of He init: the gate's bias, a zero last BN, Fixup's
        scaling (``branches`` residual branches in the net) or SkipInit's zero gain."""
        if self.gate is not None:
            self.gate.reset_parameters()
        if self.init == "zero_last_bn":
            nn.init.zeros_(self.norms()[-1].weight)
        elif self.init == "fixup":
            *first, last = self.convs()
            with torch.no_grad():
                for conv in first:
                    conv.weight.mul_(branches ** (-1.0 / (2 * self.layers - 2)))
                nn.init.zeros_(last.weight)
                for b in self.fixup_bias:
                    b.zero_()
                self.fixup_scale.fill_(1.0)
        elif self.init == "skipinit":
            nn.init.zeros_(self.skip_gain)

    def branch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual branch F(x), and the input a shape-changing shortcut takes (the block's
        input; its pre-activation in a preact unit; plus the first scalar bias with Fixup)."""
        fixup = self.fixup_bias if self.init == "fixup" else None
        h, pre = x, x
        for i, (conv, norm) in enumerate(zip(self.convs(), self.norms(), strict=True)):
            if self.preact:
                h = norm(h)
                if fixup is not None:
                    h = h + fixup[2 * i]
                h = F.relu(h)
                if i == 0:
                    pre = h
                if fixup is not None:
                    h = h + fixup[2 * i + 1]
                h = conv(h)
            else:
                if fixup is not None:
                    h = h + fixup[2 * i]
                    if i == 0:
                        pre = h  # Fixup's shape-changing shortcut takes the biased input too
                h = norm(conv(h))
                if i < self.layers - 1:
                    if fixup is not None:
                        h = h + fixup[2 * i + 1]
                    h = F.relu(h)
        if fixup is not None:
            h = h * self.fixup_scale + fixup[-1]
        if self.init == "skipinit":
            h = h * self.skip_gain
        return h, pre

    def _combine(self, f: torch.Tensor | None, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(pre if self.changes_shape else x)
        if self.gate is not None:
            g = self.gate(x)
            s = (1 - g) * s
            if f is not None and self.exclusive:
                f = g * f
        elif f is not None and self.branch_scale != 1.0:
            f = self.branch_scale * f
        out = s if f is None else f + s
        return out if self.preact else F.relu(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, pre = self.branch(x)
        if self.shortcut is None:
            return f if self.preact else F.relu(f)
        return self._combine(f, x, pre)

    def shortcut_path(self, x: torch.Tensor) -> torch.Tensor:
        """The unit's output with its residual branch deleted (F = 0), as in a lesion study:
        the shortcut as the unit weighs it (gated, scaled), then the ReLU of a post unit."""
        if self.shortcut is None:
            raise ValueError("a plain unit has no shortcut path")
        pre = x
        if self.preact and self.changes_shape:  # the pre-activation the shortcut shares
            pre = self.bn1(x)
            if self.init == "fixup":
                pre = pre + self.fixup_bias[0]
            pre = F.relu(pre)
        elif self.init == "fixup":
            pre = x + self.fixup_bias[0]
        return self._combine(None, x, pre)


def _design(shortcut: str, options: dict[str, Any]) -> Design:
    unknown = sorted(set(options) - set(BY_KEY))
    if unknown:
        known = ", ".join(k for k in BY_KEY if k != "shortcut")
        raise ValueError(f"unknown design option {', '.join(unknown)} (expected one of: {known})")
    return Design(shortcut=shortcut, **options)


class CifarNet(nn.Module):
    """A plain or residual net for small images (any size, any channel count): depth 6n+2 with
    basic units, 9n+2 with bottleneck units (stage widths 4w, 8w, 16w, bottlenecks w, 2w, 4w).

    ``options`` are the design options (``norm``, ``block``, ``unit``, ``shortcut_variant`` and
    its settings, ``init``); the defaults build the 2015 net (conv-BN-ReLU stem). With
    ``block=preact`` the stem is a bare conv and a BN-ReLU comes before the pooling; with
    ``init=fixup`` the stem and the classifier get Fixup's scalar biases and the classifier
    starts at zero.
    """

    def __init__(
        self,
        depth: int,
        residual: bool,
        shortcut: str = "A",
        width: int = 16,
        in_channels: int = 3,
        num_classes: int = 10,
        **options: Any,
    ) -> None:
        super().__init__()
        design = _design(shortcut, options)
        check_design(residual, design)
        n = check_depth(depth, design.unit)
        check_sizes(width, in_channels, num_classes)
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.norm, self.block, self.unit = design.norm, design.block, design.unit
        self.shortcut_variant, self.init = design.shortcut_variant, design.init
        self.design = design
        fixup = design.init == "fixup"
        bias = design.norm == "none" and not fixup
        if design.block == "preact":
            self.stem = nn.Sequential(conv3x3(in_channels, width, bias=bias))
        else:
            self.stem = nn.Sequential(
                conv3x3(in_channels, width, bias=bias),
                ScalarBias() if fixup else norm2d(width, design.norm),
                nn.ReLU(inplace=True),
            )
        expansion = EXPANSION if design.unit == "bottleneck" else 1
        stages, channels = [], width
        for i in range(3):
            stage_width = width * 2**i * expansion
            units = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                units.append(Unit(channels, stage_width, stride, residual, design))
                channels = stage_width
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.final: nn.Module | None = None
        if design.block == "preact":
            first = ScalarBias() if fixup else norm2d(channels, design.norm)
            self.final = nn.Sequential(first, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_bias = ScalarBias() if fixup else None
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    @property
    def family(self) -> str:
        """``resnet`` or ``plain``."""
        return family(self.residual)

    def units(self) -> list[Unit]:
        """The units in forward order."""
        return [m for m in self.modules() if isinstance(m, Unit)]

    def reset_parameters(self) -> None:
        """He (Kaiming, fan-in) init for convs, BN to identity; the FC keeps PyTorch's default.

        Then the design's init: zero last BN gamma of each branch (``zero_last_bn``), Fixup's
        rescaled and zeroed convs and zero classifier (``fixup``), or SkipInit's zero gains.
        """
        he_init(self, mode="fan_in")
        units = self.units()
        for unit in units:
            unit.reset_parameters(branches=len(units))
        if self.init == "fixup":
            for m in self.modules():
                if isinstance(m, ScalarBias):
                    nn.init.zeros_(m.bias)
            nn.init.zeros_(self.fc.weight)
            nn.init.zeros_(self.fc.bias)

    def parameter_groups(self, lr: float) -> list[dict[str, Any]] | None:
        """Optimizer parameter groups for learning rate ``lr``: with ``init=fixup``, Fixup's
        scalar biases and multipliers learn at ``lr / 10`` (as in Fixup's reference code);
        None (one group, as for every other design) otherwise."""
        if self.init != "fixup":
            return None
        scalars = {
            id(p): p for m in self.modules() if isinstance(m, ScalarBias) for p in m.parameters()
        }
        for u in self.units():
            scalars.update((id(p), p) for p in [*u.fixup_bias, u.fixup_scale])
        others = [p for p in self.parameters() if id(p) not in scalars]
        return [{"params": list(scalars.values()), "lr": lr / 10}, {"params": others}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        if self.final is not None:
            x = self.final(x)
        x = torch.flatten(self.pool(x), 1)
        if self.head_bias is not None:
            x = self.head_bias(x)
        return self.fc(x)


# The builder the configs name (``_target_: degradation.models.cifar_net``).
cifar_net = CifarNet
