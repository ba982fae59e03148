"""The paper's 6n+2 CIFAR family (Section 4.2), its 2016 redesigns, and DenseNet-BC.

A net of depth 6n+2 is one 3x3 stem conv, three stages of n blocks (each block two 3x3 convs,
widths w, 2w, 4w, stride 2 at the first conv of stages 2 and 3), global average pooling and one
fully connected layer. ``residual=True`` adds a shortcut around every block; nothing else changes.

The same builder makes the designs of the paper's sequel (He et al. 2016, "Identity Mappings in
Deep Residual Networks") and of the normalization-free residual nets that followed:

- ``block``: ``post`` (the 2015 unit: conv-BN-ReLU, ReLU after the addition) or ``preact`` (full
  pre-activation: BN-ReLU-conv, nothing after the addition, one BN-ReLU before the pooling).
- ``unit``: ``basic`` (two 3x3 convs, depth 6n+2) or ``bottleneck`` (1x1, 3x3, 1x1 with 4x
  expansion, depth 9n+2: ResNet-164 is n=18, ResNet-1001 n=111).
- ``shortcut_variant``: what sits on the identity shortcuts (the 2016 paper's Table 1).
- ``init``: ``default`` (He), ``zero_last_bn``, ``fixup`` (Zhang et al. 2019) or ``skipinit``
  (De & Smith 2020).

The defaults build exactly the 2015 nets, with the same parameter names, so that earlier
checkpoints load. :class:`DenseNet` is the dense arm (Huang et al. 2017).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from degradation.rundirs import family, model_family  # noqa: F401 - this module's vocabulary

SHORTCUTS = ("A", "B", "C")
# model.norm: BN after every conv (the paper), or no normalization at all (convs get a bias).
NORMS = ("batch", "none")
# model.block: the 2015 unit (post-activation) or full pre-activation (He et al. 2016).
BLOCK_KINDS = ("post", "preact")
# model.unit: two 3x3 convs (depth 6n+2) or a 1x1-3x3-1x1 bottleneck (depth 9n+2).
UNITS = ("basic", "bottleneck")
# The output width of a bottleneck unit is this many times the width of its 3x3 conv.
EXPANSION = 4
# model.shortcut_variant: the shortcuts of the 2016 paper's Table 1, on shape-keeping blocks.
SHORTCUT_VARIANTS = (
    "identity",
    "scaling",
    "exclusive_gating",
    "shortcut_gating",
    "conv1x1",
    "dropout",
)
# model.init
INITS = ("default", "zero_last_bn", "fixup", "skipinit")
# The 2016 paper's settings: lambda 0.5 on the shortcut, gate bias -6 at init, dropout 0.5.
PAPER_SHORTCUT_SCALE = 0.5
PAPER_GATE_BIAS = -6.0
PAPER_SHORTCUT_DROPOUT = 0.5

# He et al. 2016, Table 1: ResNet-110 on CIFAR-10, test error (%) of each shortcut setting
# (None: the paper reports that it fails to train well). The keys are the rows of
# conf/ablation/ (``+ablation=<row>``); each row's model options are beside its number.
PAPER_2016_TABLE1: dict[str, tuple[dict[str, Any], float | None]] = {
    "identity": ({"shortcut_variant": "identity"}, 6.61),
    "scaling": (
        {"shortcut_variant": "scaling", "shortcut_scale": 0.5, "scale_branch": True},
        12.35,
    ),
    "scaling_shortcut_only": (
        {"shortcut_variant": "scaling", "shortcut_scale": 0.5, "scale_branch": False},
        None,
    ),
    "exclusive_gating": ({"shortcut_variant": "exclusive_gating", "gate_bias": -6.0}, 8.70),
    "exclusive_gating_bias0": ({"shortcut_variant": "exclusive_gating", "gate_bias": 0.0}, None),
    "shortcut_gating": ({"shortcut_variant": "shortcut_gating", "gate_bias": -6.0}, 6.91),
    "shortcut_gating_bias0": ({"shortcut_variant": "shortcut_gating", "gate_bias": 0.0}, 12.86),
    "conv1x1": ({"shortcut_variant": "conv1x1"}, 12.22),
    "dropout": ({"shortcut_variant": "dropout", "shortcut_dropout": 0.5}, None),
}
# He et al. 2016, Tables 2 and 3 (CIFAR-10 test error, %): post- vs full pre-activation, by
# (depth, unit). For the 1001-layer preact net the paper also gives 4.89 +- 0.14 over 5 runs.
PAPER_2016_PREACT: dict[tuple[int, str], dict[str, float]] = {
    (110, "basic"): {"post": 6.61, "preact": 6.37},
    (164, "bottleneck"): {"post": 5.93, "preact": 5.46},
    (1001, "bottleneck"): {"post": 7.61, "preact": 4.92},
}
# Huang et al. 2017: DenseNet-BC on CIFAR-10 with augmentation, by (depth, growth rate):
# (test error %, parameters in millions).
PAPER_DENSENET_BC: dict[tuple[int, int], tuple[float, float]] = {(100, 12): (4.51, 0.8)}


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is one of :data:`NORMS`, else raise a ValueError."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return norm


def norm2d(channels: int, norm: str) -> nn.Module:
    """The layer after a conv: BatchNorm2d, or an identity when ``norm`` is ``none``."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def _layers_per_block(unit: str) -> int:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
    return 2 if unit == "basic" else 3


def valid_depths(limit: int = 1202, unit: str = "basic") -> list[int]:
    """Depths 6n+2 (``unit=basic``) or 9n+2 (``unit=bottleneck``), n >= 1, up to ``limit``."""
    step = 3 * _layers_per_block(unit)
    return list(range(step + 2, limit + 1, step))


_DEPTHS_TEXT = {
    "basic": "6n+2 with n >= 1 (8, 14, 20, 26, 32, 38, 44, 50, 56, ..., 110, ..., 1202)",
    "bottleneck": "9n+2 with n >= 1 (11, 20, 29, 38, 47, 56, ..., 164, ..., 1001)",
}


def check_depth(depth: int, unit: str = "basic") -> int:
    """Return the number of blocks per stage n for a depth 6n+2 (basic units) or 9n+2
    (bottleneck units), or raise a ValueError naming the valid depths of each unit."""
    step = 3 * _layers_per_block(unit)
    valid = isinstance(depth, int) and not isinstance(depth, bool) and depth >= step + 2
    if not valid or (depth - 2) % step:
        other = "bottleneck" if unit == "basic" else "basic"
        raise ValueError(
            f"depth must be {_DEPTHS_TEXT[unit]}; got {depth!r} (that is for unit={unit}; "
            f"with unit={other} it is {_DEPTHS_TEXT[other]})"
        )
    return (depth - 2) // step


def check_sizes(width: int, in_channels: int, num_classes: int) -> None:
    """Refuse widths and channel or class counts that cannot make a net."""
    for name, value in (("width", width), ("in_channels", in_channels)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")


def he_init(net: nn.Module, mode: str) -> None:
    """He (Kaiming) normal init of every conv (``mode`` fan_in or fan_out), conv biases (nets
    without BN) to zero, BN to identity."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """3x3 convolution, padding 1; no bias where a BN follows (``bias`` for nets without BN)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


class ZeroPadShortcut(nn.Module):
    """Option A: identity with stride-``stride`` subsampling and zero-padded extra channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("option A cannot reduce the number of channels")
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))
        return x


def projection(
    in_channels: int, out_channels: int, stride: int, norm: str = "batch"
) -> nn.Sequential:
    """Options B and C: 1x1 convolution (with stride) followed by BN (or by nothing)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=norm == "none"),
        norm2d(out_channels, norm),
    )


def make_shortcut(
    option: str, in_channels: int, out_channels: int, stride: int, norm: str = "batch"
) -> nn.Module:
    """The shortcut of one block for option A, B or C."""
    changes_shape = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes_shape):
        return projection(in_channels, out_channels, stride, norm)
    if option == "A" and changes_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


class Block(nn.Module):
    """Two 3x3 conv+BN layers; with a shortcut, the second ReLU comes after the addition.

    The 2015 unit with an identity (or option A/B/C) shortcut; every other design of
    :class:`CifarNet` is a :class:`Unit`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        residual: bool,
        shortcut: str = "A",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv3x3(in_channels, out_channels, stride, bias)
        self.bn1 = norm2d(out_channels, norm)
        self.conv2 = conv3x3(out_channels, out_channels, bias=bias)
        self.bn2 = norm2d(out_channels, norm)
        self.shortcut = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm) if residual else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


# --------------------------------------------------------------------------------------------
# The 2016 designs: pre-activation, bottleneck units, shortcut variants, normalization-free init
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """How the units of a :class:`CifarNet` are built; the defaults are the 2015 net."""

    block: str = "post"
    unit: str = "basic"
    shortcut: str = "A"
    shortcut_variant: str = "identity"
    shortcut_scale: float = PAPER_SHORTCUT_SCALE
    scale_branch: bool = True
    gate_bias: float = PAPER_GATE_BIAS
    shortcut_dropout: float = PAPER_SHORTCUT_DROPOUT
    init: str = "default"
    norm: str = "batch"

    @property
    def layers(self) -> int:
        """Weighted layers per unit: 2 (basic) or 3 (bottleneck)."""
        return _layers_per_block(self.unit)

    @property
    def is_2015_block(self) -> bool:
        """Whether the units are the 2015 :class:`Block` (the init may still zero its last BN)."""
        return (
            self.block == "post"
            and self.unit == "basic"
            and self.shortcut_variant == "identity"
            and self.init in ("default", "zero_last_bn")
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_design(residual: bool, design: Design) -> None:
    """Refuse unknown options and combinations that do not make sense, with a ValueError that
    says what to set instead."""
    choices = (
        ("block", BLOCK_KINDS),
        ("unit", UNITS),
        ("shortcut", SHORTCUTS),
        ("shortcut_variant", SHORTCUT_VARIANTS),
        ("init", INITS),
        ("norm", NORMS),
    )
    for key, allowed in choices:
        value = getattr(design, key)
        if value not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    variant, init, norm = design.shortcut_variant, design.init, design.norm
    if variant != "identity":
        if not residual:
            raise ValueError(
                f"shortcut_variant={variant} changes the shortcuts, and a plain net "
                "(residual=false) has none; use a residual net (model=resnet) or "
                "shortcut_variant=identity"
            )
        if design.shortcut == "C":
            raise ValueError(
                f"shortcut_variant={variant} replaces the identity shortcuts of shape-keeping "
                "blocks, and shortcut=C has none (a projection on every shortcut); use "
                "shortcut=A or B"
            )
    scale = design.shortcut_scale
    if not _is_number(scale) or not 0 <= scale <= 1:
        raise ValueError(f"shortcut_scale must be a number in [0, 1]; got {scale!r}")
    if not isinstance(design.scale_branch, bool):
        raise ValueError(f"scale_branch must be true or false; got {design.scale_branch!r}")
    if not _is_number(design.gate_bias):
        raise ValueError(f"gate_bias must be a number; got {design.gate_bias!r}")
    p = design.shortcut_dropout
    if not _is_number(p) or not 0 <= p < 1:
        raise ValueError(f"shortcut_dropout must be a probability in [0, 1); got {p!r}")
    if init == "default":
        return
    if not residual:
        raise ValueError(
            f"init={init} starts each residual branch at zero, and a plain net (residual=false) "
            "has no residual branches (its blocks would output zero); use init=default or a "
            "residual net (model=resnet)"
        )
    if init == "zero_last_bn" and norm != "batch":
        raise ValueError(
            "init=zero_last_bn zeroes the last BN of each residual branch, and norm=none has no "
            "BN; without normalization use init=fixup or init=skipinit"
        )
    if init == "zero_last_bn" and design.block == "preact":
        raise ValueError(
            "init=zero_last_bn zeroes the last BN of each residual branch, and in a "
            "pre-activation unit that BN comes before the last conv: the branch would output "
            "zero and never receive a gradient; use block=post or init=default"
        )
    if init in ("fixup", "skipinit") and norm != "none":
        raise ValueError(
            f"init={init} is defined for residual nets without normalization: set norm=none "
            f"(got norm={norm}); with BN, init=zero_last_bn is the corresponding choice"
        )


class ScalarBias(nn.Module):
    """A learnable scalar added to every value, starting at zero (Fixup's biases)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class Scale(nn.Module):
    """Multiply by a constant (constant-scaling shortcut)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Gate(nn.Module):
    """The 2016 paper's gate g(x) = sigmoid(1x1 conv of x + b), with bias ``bias`` at init."""

    def __init__(self, channels: int, bias: float = PAPER_GATE_BIAS) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=True)
        self.init_bias = float(bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-in) weights, the bias at ``init_bias``."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="relu")
        nn.init.constant_(self.conv.bias, self.init_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


def variant_shortcut(design: Design, channels: int) -> nn.Module:
    """The shortcut map of a shape-keeping block for ``design.shortcut_variant``.

    ``conv1x1`` is a 1x1 convolution without BN on every identity shortcut (the 2016 paper's
    Fig. 2e). Option C is a 1x1 conv *with* BN on every shortcut; with ``shortcut=B`` this
    variant puts a 1x1 conv on every shortcut too (option B's projections, with BN, where the
    shape changes), i.e. option C without the BN on the shape-keeping ones. Gating leaves the
    map an identity: the gate weighs it in :class:`Unit`.
    """
    variant = design.shortcut_variant
    if variant == "scaling":
        return Scale(design.shortcut_scale)
    if variant == "conv1x1":
        return nn.Conv2d(channels, channels, 1, bias=design.norm == "none")
    if variant == "dropout":
        return nn.Dropout(design.shortcut_dropout)
    return nn.Identity()


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
        self, in_channels: int, out_channels: int, stride: int, residual: bool, design: Design
    ) -> None:
        super().__init__()
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


class CifarNet(nn.Module):
    """A plain or residual net for small images (any size, any channel count): depth 6n+2 with
    basic units, 9n+2 with bottleneck units (stage widths 4w, 8w, 16w, bottlenecks w, 2w, 4w).

    With the default design it is the 2015 net (:class:`Block` units, conv-BN-ReLU stem). With
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
        norm: str = "batch",
        block: str = "post",
        unit: str = "basic",
        shortcut_variant: str = "identity",
        shortcut_scale: float = PAPER_SHORTCUT_SCALE,
        scale_branch: bool = True,
        gate_bias: float = PAPER_GATE_BIAS,
        shortcut_dropout: float = PAPER_SHORTCUT_DROPOUT,
        init: str = "default",
    ) -> None:
        super().__init__()
        design = Design(
            block, unit, shortcut, shortcut_variant, shortcut_scale, scale_branch, gate_bias,
            shortcut_dropout, init, norm,
        )  # fmt: skip
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}; got {shortcut!r}")
        check_norm(norm)
        check_design(residual, design)
        n = check_depth(depth, unit)
        check_sizes(width, in_channels, num_classes)
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.norm, self.block, self.unit = norm, block, unit
        self.shortcut_variant, self.init = shortcut_variant, init
        self.design = design
        fixup = init == "fixup"
        bias = norm == "none" and not fixup
        if block == "preact":
            self.stem = nn.Sequential(conv3x3(in_channels, width, bias=bias))
        else:
            self.stem = nn.Sequential(
                conv3x3(in_channels, width, bias=bias),
                ScalarBias() if fixup else norm2d(width, norm),
                nn.ReLU(inplace=True),
            )
        expansion = EXPANSION if unit == "bottleneck" else 1
        stages, channels = [], width
        for i in range(3):
            stage_width = width * 2**i * expansion
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                if design.is_2015_block:
                    blocks.append(Block(channels, stage_width, stride, residual, shortcut, norm))
                else:
                    blocks.append(Unit(channels, stage_width, stride, residual, design))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final: nn.Module | None = None
        if block == "preact":
            first = ScalarBias() if fixup else norm2d(channels, norm)
            self.final = nn.Sequential(first, nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_bias = ScalarBias() if fixup else None
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    @property
    def family(self) -> str:
        """``resnet`` or ``plain``."""
        return family(self.residual)

    def reset_parameters(self) -> None:
        """He (Kaiming, fan-in) init for convs, BN to identity; the FC keeps PyTorch's default.

        Then the design's init: zero last BN gamma of each branch (``zero_last_bn``), Fixup's
        rescaled and zeroed convs and zero classifier (``fixup``), or SkipInit's zero gains.
        """
        he_init(self, mode="fan_in")
        blocks = [m for m in self.modules() if isinstance(m, Block | Unit)]
        for block in blocks:
            if isinstance(block, Unit):
                block.reset_parameters(branches=len(blocks))
            elif self.init == "zero_last_bn":
                nn.init.zeros_(block.bn2.weight)
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
        for u in self.modules():
            if isinstance(u, Unit):
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


def cifar_net(
    depth: int,
    residual: bool,
    shortcut: str = "A",
    width: int = 16,
    in_channels: int = 3,
    num_classes: int = 10,
    norm: str = "batch",
    block: str = "post",
    unit: str = "basic",
    shortcut_variant: str = "identity",
    shortcut_scale: float = PAPER_SHORTCUT_SCALE,
    scale_branch: bool = True,
    gate_bias: float = PAPER_GATE_BIAS,
    shortcut_dropout: float = PAPER_SHORTCUT_DROPOUT,
    init: str = "default",
) -> nn.Module:
    """The paper's CIFAR net of depth 6n+2 (9n+2 with bottleneck units); ``residual`` switches
    the shortcuts on, ``norm`` (``batch`` or ``none``) the BN layers; the other options are the
    2016 designs (see :class:`CifarNet` and :class:`Unit`)."""
    return CifarNet(
        depth, residual, shortcut, width, in_channels, num_classes, norm, block, unit,
        shortcut_variant, shortcut_scale, scale_branch, gate_bias, shortcut_dropout, init,
    )  # fmt: skip


def check_cifar_config(model: Mapping[str, Any]) -> None:
    """The checks of :func:`cifar_net` on a model configuration, without building the net."""
    design = Design(**{k: model[k] for k in Design.__dataclass_fields__ if k in model})
    check_design(bool(model.get("residual", False)), design)


# --------------------------------------------------------------------------------------------
# DenseNet-BC (Huang et al. 2017) for small images
# --------------------------------------------------------------------------------------------


def check_dense_depth(depth: int) -> int:
    """Layers per dense block, (L - 4) / 6, for a DenseNet-BC of depth L; else a ValueError."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            "depth must be 6n+4 with n >= 1 for DenseNet-BC (10, 16, 22, 28, 34, 40, 46, ..., "
            f"100, ..., 190, 250); got {depth!r}"
        )
    return (depth - 4) // 6


class DenseLayer(nn.Module):
    """A DenseNet-BC layer: BN-ReLU-1x1 conv (4k channels)-BN-ReLU-3x3 conv (k channels)."""

    def __init__(self, in_channels: int, growth_rate: int, norm: str = "batch") -> None:
        super().__init__()
        bias = norm == "none"
        self.bn1 = norm2d(in_channels, norm)
        self.conv1 = nn.Conv2d(in_channels, 4 * growth_rate, 1, bias=bias)
        self.bn2 = norm2d(4 * growth_rate, norm)
        self.conv2 = conv3x3(4 * growth_rate, growth_rate, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


class DenseBlock(nn.Module):
    """Layers that each take the concatenation of the block's input and all earlier outputs."""

    def __init__(self, layers: int, in_channels: int, growth_rate: int, norm: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, norm) for i in range(layers)
        )
        self.out_channels = in_channels + layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-1x1 conv (compressing the channels), 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__(
            norm2d(in_channels, norm),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=norm == "none"),
            nn.AvgPool2d(2),
        )


class DenseNet(nn.Module):
    """DenseNet-BC for small images: a 3x3 conv to 2k channels, three dense blocks of
    (L - 4) / 6 bottleneck layers with transitions (compression ``compression``) between them,
    BN-ReLU, global average pooling, one fully connected layer. Depth L counts the convs and
    the classifier: 3 blocks x 2 convs x n + stem + 2 transitions + FC = 6n + 4.
    """

    # No shortcut adds a block's input to its output: not residual, family "dense".
    residual = False
    shortcut = None
    family = "dense"

    def __init__(
        self,
        depth: int = 100,
        growth_rate: int = 12,
        compression: float = 0.5,
        in_channels: int = 3,
        num_classes: int = 10,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        n = check_dense_depth(depth)
        if not isinstance(growth_rate, int) or isinstance(growth_rate, bool) or growth_rate < 1:
            raise ValueError(f"growth_rate must be a positive integer; got {growth_rate!r}")
        if not _is_number(compression) or not 0 < compression <= 1:
            raise ValueError(f"compression must be a number in (0, 1]; got {compression!r}")
        check_sizes(1, in_channels, num_classes)
        self.depth, self.growth_rate, self.compression = depth, growth_rate, compression
        self.norm = check_norm(norm)
        channels = 2 * growth_rate
        self.stem = conv3x3(in_channels, channels, bias=norm == "none")
        stages: list[nn.Module] = []
        for i in range(3):
            dense = DenseBlock(n, channels, growth_rate, norm)
            stages.append(dense)
            channels = dense.out_channels
            if i < 2:
                out = int(compression * channels)
                stages.append(Transition(channels, out, norm))
                channels = out
        self.features = nn.Sequential(*stages)
        self.final = nn.Sequential(norm2d(channels, norm), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming, fan-out, as the DenseNet code) init for convs, BN to identity, zero FC
        bias."""
        he_init(self, mode="fan_out")
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.features(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def densenet(
    depth: int = 100,
    growth_rate: int = 12,
    compression: float = 0.5,
    in_channels: int = 3,
    num_classes: int = 10,
    norm: str = "batch",
) -> nn.Module:
    """DenseNet-BC of depth ``depth`` (6n+4) and growth rate ``growth_rate`` (k); ``norm=none``
    leaves out the BN layers."""
    return DenseNet(depth, growth_rate, compression, in_channels, num_classes, norm)


def _contiguous_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def is_strided_1x1(module: nn.Module) -> bool:
    """A 1x1 convolution with stride > 1 (the projection shortcuts where the shape changes)."""
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and any(s > 1 for s in module.stride)
    )


def keep_strided_1x1_nchw(net: nn.Module) -> int:
    """Run a channels-last net's strided 1x1 convolutions in NCHW layout; return how many.

    oneDNN's fp32 CPU backward of a channels-last 1x1 stride-2 convolution with few input
    channels (4 to 8, on 56x56 and larger maps) segfaults or hangs on some CPUs (seen with torch
    2.14 on AMD EPYC). These layers are few and cheap, so on CPUs they take NCHW weights and
    inputs (a forward pre-hook), and the rest of the net stays channels-last. Idempotent.
    """
    count = 0
    for m in net.modules():
        if is_strided_1x1(m):
            # clone, not contiguous(): a 1x1 kernel's channels-last strides count as contiguous
            m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)
            if not getattr(m, "_nchw_hook", False):
                m.register_forward_pre_hook(_contiguous_inputs)
                m._nchw_hook = True
            count += 1
    return count


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# The ImageNet family (Table 1): ResNet-18/34/50/101/152 and their plain twins
# --------------------------------------------------------------------------------------------

# depth -> (block type, blocks per stage)
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEMS = ("imagenet", "small")


def check_imagenet_depth(depth: int) -> tuple[str, tuple[int, ...]]:
    """Block type and blocks per stage for depth 18, 34, 50, 101 or 152, or a ValueError."""
    if isinstance(depth, bool) or depth not in IMAGENET_DEPTHS:
        raise ValueError(f"depth must be one of 18, 34, 50, 101, 152; got {depth!r}")
    return IMAGENET_DEPTHS[depth]


def _projection_if(
    residual: bool, in_channels: int, out_channels: int, stride: int, norm: str = "batch"
):
    """The projection shortcut (1x1 conv + BN) where a residual block changes shape, else None."""
    if residual and (stride != 1 or in_channels != out_channels):
        return projection(in_channels, out_channels, stride, norm)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers (ResNet-18/34); names as in torchvision."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        residual: bool,
        stride_in_1x1: bool,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.residual = residual
        bias = norm == "none"
        self.conv1 = conv3x3(in_channels, planes, stride, bias)
        self.bn1 = norm2d(planes, norm)
        self.conv2 = conv3x3(planes, planes, bias=bias)
        self.bn2 = norm2d(planes, norm)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection_if(residual, in_channels, planes, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.relu(out)


class BottleneckBlock(nn.Module):
    """1x1, 3x3, 1x1 conv+BN layers with 4x expansion (ResNet-50/101/152).

    The stride sits on the 3x3 conv, as in torchvision; ``stride_in_1x1`` moves it to the first
    1x1 conv as in the paper's original models (fewer multiply-adds, Table 1's numbers).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        residual: bool,
        stride_in_1x1: bool,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.residual = residual
        out_channels = planes * self.expansion
        bias = norm == "none"
        self.conv1 = nn.Conv2d(
            in_channels, planes, 1, stride=stride if stride_in_1x1 else 1, bias=bias
        )
        self.bn1 = norm2d(planes, norm)
        self.conv2 = conv3x3(planes, planes, 1 if stride_in_1x1 else stride, bias)
        self.bn2 = norm2d(planes, norm)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=bias)
        self.bn3 = norm2d(out_channels, norm)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection_if(residual, in_channels, out_channels, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.relu(out)


class ImageNetNet(nn.Module):
    """ResNet-18/34/50/101/152 (``residual=True``) or its plain twin: the same layers without the
    shortcuts and their projections. Parameter names follow torchvision's ``resnet*``, so with
    the ImageNet stem a torchvision state dict loads as it is and computes the same function.

    ``stem="imagenet"``: 7x7 stride-2 conv and 3x3 stride-2 max-pool, for 224-pixel images;
    ``stem="small"``: one 3x3 conv, no pool, for 28- or 32-pixel images. ``width`` is the first
    stage's width (64 in the paper; the stages have width, 2, 4 and 8 times width).
    """

    def __init__(
        self,
        depth: int,
        residual: bool,
        stem: str = "imagenet",
        width: int = 64,
        in_channels: int = 3,
        num_classes: int = 1000,
        stride_in_1x1: bool = False,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        kind, counts = check_imagenet_depth(depth)
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}")
        check_sizes(width, in_channels, num_classes)
        self.depth, self.residual, self.stem_kind = depth, residual, stem
        self.norm = check_norm(norm)
        bias = norm == "none"
        self.shortcut = "B"  # identity, projections where the shape changes
        block = BasicBlock if kind == "basic" else BottleneckBlock
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=bias)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(in_channels, width, bias=bias)
            self.maxpool = nn.Identity()
        self.bn1 = norm2d(width, norm)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for i, count in enumerate(counts):
            planes, blocks = width * 2**i, []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(channels, planes, stride, residual, stride_in_1x1, norm))
                channels = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialisation: He (fan-out) for convs, BN to identity."""
        he_init(self, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def imagenet_net(
    depth: int,
    residual: bool,
    stem: str = "imagenet",
    width: int = 64,
    in_channels: int = 3,
    num_classes: int = 1000,
    stride_in_1x1: bool = False,
    norm: str = "batch",
) -> nn.Module:
    """ResNet-``depth`` of the ImageNet family, or its plain twin when ``residual`` is False;
    ``norm=none`` leaves out the BN layers."""
    return ImageNetNet(depth, residual, stem, width, in_channels, num_classes, stride_in_1x1, norm)


def multiply_adds(net: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Multiply-adds of one forward pass of one image (convolutions and linear layers)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(*input_shape))
    net.train(was_training)
    return counter.get_total_flops() // 2 // input_shape[0]


# Table 1 of the paper: multiply-adds ("FLOPs") of the ImageNet models, x 10^9.
PAPER_TABLE1_FLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
