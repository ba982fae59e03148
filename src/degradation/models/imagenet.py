"""The ImageNet family (the paper's Table 1): ResNet-18/34/50/101/152 and their plain twins."""

from __future__ import annotations

import torch
from torch import nn

from degradation.designs import check_imagenet_depth
from degradation.models.layers import check_norm, check_sizes, conv3x3, he_init, norm2d, projection

STEMS = ("imagenet", "small")


def _projection_if(
    residual: bool, in_channels: int, out_channels: int, stride: int, norm: str = "batch"
):
    """The projection shortcut (1x1 conv + BN) where a residual block changes shape, else None."""
    if residual and (stride != 1 or in_channels != out_channels):
        return projection(in_channels, out_channels, stride, norm)
    return None


class _Block(nn.Module):
    """What the ImageNet family's blocks share: the projection where a residual block changes
    shape, and the addition before the last ReLU (names as in torchvision)."""

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
        self.make_layers(in_channels, planes, stride, stride_in_1x1, norm)
        self.relu = nn.ReLU(inplace=True)
        out_channels = planes * self.expansion
        self.downsample = _projection_if(residual, in_channels, out_channels, stride, norm)

    def make_layers(
        self, in_channels: int, planes: int, stride: int, stride_in_1x1: bool, norm: str
    ) -> None:
        """Make the block's convs and norms (``conv1``, ``bn1``, ...)."""
        raise NotImplementedError

    def add_shortcut(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The block's output: the branch plus the shortcut (residual), then the ReLU."""
        if self.residual:
            out = out + (self.downsample(x) if self.downsample is not None else x)
        return self.relu(out)


class BasicBlock(_Block):
    """Two 3x3 conv+BN layers (ResNet-18/34)."""

    def make_layers(
        self, in_channels: int, planes: int, stride: int, stride_in_1x1: bool, norm: str
    ) -> None:
        bias = norm == "none"
        self.conv1 = conv3x3(in_channels, planes, stride, bias)
        self.bn1 = norm2d(planes, norm)
        self.conv2 = conv3x3(planes, planes, bias=bias)
        self.bn2 = norm2d(planes, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.add_shortcut(self.bn2(self.conv2(out)), x)


class BottleneckBlock(_Block):
    """1x1, 3x3, 1x1 conv+BN layers with 4x expansion (ResNet-50/101/152).

    The stride sits on the 3x3 conv, as in torchvision; ``stride_in_1x1`` moves it to the first
    1x1 conv as in the paper's original models (fewer multiply-adds, Table 1's numbers).
    """

    expansion = 4

    def make_layers(
        self, in_channels: int, planes: int, stride: int, stride_in_1x1: bool, norm: str
    ) -> None:
        bias = norm == "none"
        first, middle = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, stride=first, bias=bias)
        self.bn1 = norm2d(planes, norm)
        self.conv2 = conv3x3(planes, planes, middle, bias)
        self.bn2 = norm2d(planes, norm)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=bias)
        self.bn3 = norm2d(planes * self.expansion, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.add_shortcut(self.bn3(self.conv3(out)), x)


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


# The builder the configs name (``_target_: degradation.models.imagenet_net``).
imagenet_net = ImageNetNet
