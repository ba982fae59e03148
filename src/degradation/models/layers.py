"""The layers every family is built from: convs, norms, shortcuts, gates and initialisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from degradation.designs import BY_KEY


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is one of the norms of :data:`degradation.designs.OPTIONS`, else
    raise a ValueError."""
    BY_KEY["norm"].check(norm)
    return norm


def norm2d(channels: int, norm: str) -> nn.Module:
    """The layer after a conv: BatchNorm2d, or an identity when ``norm`` is ``none``."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


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

    def __init__(self, channels: int, bias: float = BY_KEY["gate_bias"].default) -> None:
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


def variant_shortcut(design, channels: int) -> nn.Module:
    """The shortcut map of a shape-keeping block for ``design.shortcut_variant``.

    ``conv1x1`` is a 1x1 convolution without BN on every identity shortcut (the 2016 paper's
    Fig. 2e). Option C is a 1x1 conv *with* BN on every shortcut; with ``shortcut=B`` this
    variant puts a 1x1 conv on every shortcut too (option B's projections, with BN, where the
    shape changes), i.e. option C without the BN on the shape-keeping ones. Gating leaves the
    map an identity: the gate weighs it in :class:`~degradation.models.cifar.Unit`.
    """
    variant = design.shortcut_variant
    if variant == "scaling":
        return Scale(design.shortcut_scale)
    if variant == "conv1x1":
        return nn.Conv2d(channels, channels, 1, bias=design.norm == "none")
    if variant == "dropout":
        return nn.Dropout(design.shortcut_dropout)
    return nn.Identity()


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def multiply_adds(net: nn.Module, input_shape: tuple[int, ...] = (1, 3, 224, 224)) -> int:
    """Multiply-adds of one forward pass of one image (convolutions and linear layers)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(*input_shape))
    net.train(was_training)
    return counter.get_total_flops() // 2 // input_shape[0]
