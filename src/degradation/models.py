"""The paper's 6n+2 CIFAR family (Section 4.2): plain and residual nets built by the same code.

A net of depth 6n+2 is one 3x3 stem conv, three stages of n blocks (each block two 3x3 convs,
widths w, 2w, 4w, stride 2 at the first conv of stages 2 and 3), global average pooling and one
fully connected layer. ``residual=True`` adds a shortcut around every block; nothing else changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from degradation.rundirs import family  # noqa: F401 - part of this module's vocabulary

SHORTCUTS = ("A", "B", "C")
# model.norm: BN after every conv (the paper), or no normalization at all (convs get a bias).
NORMS = ("batch", "none")


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is one of :data:`NORMS`, else raise a ValueError."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return norm


def norm2d(channels: int, norm: str) -> nn.Module:
    """The layer after a conv: BatchNorm2d, or an identity when ``norm`` is ``none``."""
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()


def valid_depths(limit: int = 1202) -> list[int]:
    """Depths 6n+2 (n >= 1) up to ``limit``."""
    return list(range(8, limit + 1, 6))


def check_depth(depth: int) -> int:
    """Return the number of blocks per stage n for a depth 6n+2, or raise a ValueError."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, 38, 44, 50, 56, ..., 110, ..., "
            f"1202); got {depth!r}"
        )
    return (depth - 2) // 6


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
    """Two 3x3 conv+BN layers; with a shortcut, the second ReLU comes after the addition."""

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


class CifarNet(nn.Module):
    """A 6n+2-layer plain or residual net for small images (any size, any channel count)."""

    def __init__(
        self,
        depth: int,
        residual: bool,
        shortcut: str = "A",
        width: int = 16,
        in_channels: int = 3,
        num_classes: int = 10,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        n = check_depth(depth)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}; got {shortcut!r}")
        check_sizes(width, in_channels, num_classes)
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.norm = check_norm(norm)
        self.stem = nn.Sequential(
            conv3x3(in_channels, width, bias=norm == "none"),
            norm2d(width, norm),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], width
        for i, stage_width in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Block(channels, stage_width, stride, residual, shortcut, norm))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming, fan-in) init for convs, BN to identity; the FC keeps PyTorch's default."""
        he_init(self, mode="fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def cifar_net(
    depth: int,
    residual: bool,
    shortcut: str = "A",
    width: int = 16,
    in_channels: int = 3,
    num_classes: int = 10,
    norm: str = "batch",
) -> nn.Module:
    """The paper's CIFAR net of depth 6n+2; ``residual`` switches the shortcuts on, ``norm``
    (``batch`` or ``none``) the BN layers."""
    return CifarNet(depth, residual, shortcut, width, in_channels, num_classes, norm)


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
