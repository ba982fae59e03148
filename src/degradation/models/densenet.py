"""DenseNet-BC for small images (Huang et al. 2017): the dense arm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from degradation import paper
from degradation.designs import DENSE_OPTIONS, check_dense_depth
from degradation.models.layers import check_norm, check_sizes, conv3x3, he_init, norm2d


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
        growth_rate: int = paper.DENSE_GROWTH_RATE,
        compression: float = paper.DENSE_COMPRESSION,
        in_channels: int = 3,
        num_classes: int = 10,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        n = check_dense_depth(depth)
        for option, value in zip(DENSE_OPTIONS, (growth_rate, compression), strict=True):
            option.check(value)
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


# The builder the configs name (``_target_: degradation.models.densenet``).
densenet = DenseNet
