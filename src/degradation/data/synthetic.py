"""A small, deterministic, learnable data set made in memory, for tests and smoke runs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from degradation.data.base import ImageDataModule


class SyntheticDataModule(ImageDataModule):
    """A small, deterministic, learnable data set made in memory (CIFAR-shaped by default).

    Each class has a smooth random prototype image; a sample is its class prototype plus pixel
    noise. The same ``seed`` always gives the same images.
    """

    name = "synthetic"

    def __init__(
        self,
        num_train: int = 2048,
        num_test: int = 512,
        image_size: int = 32,
        in_channels: int = 3,
        num_classes: int = 10,
        noise: float = 60.0,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_train < 1 or num_test < 1 or image_size < 4 or in_channels < 1 or num_classes < 2:
            raise ValueError("synthetic data needs positive sizes and at least 2 classes")
        self.num_train, self.num_test, self.noise, self.seed = num_train, num_test, noise, seed
        self.image_size, self.in_channels, self.num_classes = image_size, in_channels, num_classes

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        coarse = torch.rand(self.num_classes, self.in_channels, 4, 4, generator=g)
        prototypes = F.interpolate(coarse, size=self.image_size, mode="bilinear") * 255.0

        def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            labels = torch.randint(0, self.num_classes, (n,), generator=g)
            noise = torch.randn(n, self.in_channels, self.image_size, self.image_size, generator=g)
            images = (prototypes[labels] + self.noise * noise).clamp_(0, 255).round_()
            return images.to(torch.uint8), labels

        return (*sample(self.num_train), *sample(self.num_test))
