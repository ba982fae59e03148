"""The base of the in-memory data modules: uint8 tensors moved once to the device, the per-pixel
mean image, the paper's batch preprocessing, and the missing-data error."""

from __future__ import annotations

import pytorch_lightning as L
import torch
from torch.utils.data import TensorDataset

from degradation.data.loader import DeviceBatches, crop_flip, draw_crop_flip, process_share


class DataUnavailableError(RuntimeError):
    """A data set is absent (or unreadable) and could not be obtained."""


class ImageDataModule(L.LightningDataModule):
    """Base class: images held as uint8 tensors, preprocessed per batch on the device.

    Subclasses implement :meth:`load`, returning (train_images, train_labels, test_images,
    test_labels) as tensors. ``val_size`` > 0 holds out that many training images (a fixed
    split) as a validation set, e.g. the paper's 45k/5k split with ``val_size=5000``;
    ``train_size`` > 0 trains on a fixed subset of that many of the remaining images.
    """

    name = "images"
    in_channels = 3
    num_classes = 10
    image_size = 32

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 128,
        val_size: int = 0,
        train_size: int = 0,
        pad: int = 4,
        flip: bool = True,
        split_seed: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be positive")
        if val_size < 0:
            raise ValueError("val_size must be >= 0")
        if train_size < 0:
            raise ValueError("train_size must be >= 0 (0: every training image)")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.pad, self.flip, self.split_seed = val_size, pad, flip, split_seed
        self.shuffle_seed, self.train_size = shuffle_seed, train_size
        self.train_set: TensorDataset | None = None
        self.eval_sets: dict[str, TensorDataset] = {}
        self.mean_image: torch.Tensor | None = None
        self._mean_on: dict[torch.device, torch.Tensor] = {}
        self._on_device: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return train images, train labels, test images, test labels."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load the tensors once, split off validation images, compute the mean image."""
        if self.train_set is not None:
            return
        x, y, test_x, test_y = self.load()
        self.eval_sets = {"test": TensorDataset(test_x, test_y)}
        if self.val_size or self.train_size:
            if self.val_size >= len(x):
                raise ValueError(f"val_size={self.val_size} leaves no training images")
            if self.val_size + self.train_size > len(x):
                raise ValueError(
                    f"train_size={self.train_size} (+ val_size={self.val_size}): the data set has "
                    f"{len(x)} training images"
                )
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = order[: self.val_size], order[self.val_size :]
            if self.val_size:
                self.eval_sets["val"] = TensorDataset(x[val_idx], y[val_idx])
            if self.train_size:  # a fixed subset: the next train_size images of the same order
                train_idx = train_idx[: self.train_size]
            x, y = x[train_idx], y[train_idx]
        self.train_set = TensorDataset(x, y)
        self.mean_image = x.float().mean(0) / 255.0

    @property
    def eval_names(self) -> list[str]:
        """Names of the evaluation sets, in the order of :meth:`val_dataloader`."""
        return list(self.eval_sets) or ["test"]

    @property
    def device(self) -> torch.device:
        """The training device (the CPU outside a Trainer)."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def tensors_on_device(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of the ``train`` set or an evaluation set, moved once to the device."""
        if self.train_set is None:
            raise RuntimeError("call setup() before asking for data loaders")
        key = (name, self.device)
        if key not in self._on_device:
            dataset = self.train_set if name == "train" else self.eval_sets[name]
            self._on_device[key] = tuple(t.to(self.device) for t in dataset.tensors)
        return self._on_device[key]

    def train_dataloader(self) -> DeviceBatches:
        """Shuffled, augmented batches of the training set, straight from device memory; each
        process of a multi-process run takes its share of every (global) batch."""
        x, y = self.tensors_on_device("train")
        augment = self.pad > 0 or self.flip
        world, rank = process_share(self.trainer)
        return DeviceBatches(
            x, y, self.batch_size, shuffle=True, seed=self.shuffle_seed, augment=augment,
            pad=max(self.pad, 0), flip=self.flip, num_replicas=world, rank=rank,
        )  # fmt: skip

    def _eval_loader(self, name: str) -> DeviceBatches:
        x, y = self.tensors_on_device(name)
        return DeviceBatches(x, y, self.eval_batch_size)

    def val_dataloader(self) -> list[DeviceBatches]:
        """The periodic evaluation sets: the test set, then the validation split if any."""
        return [self._eval_loader(name) for name in self.eval_sets]

    def test_dataloader(self) -> DeviceBatches:
        """The untouched test set."""
        return self._eval_loader("test")

    def preprocess(
        self, x: torch.Tensor, train: bool, aug: torch.Tensor | None = None
    ) -> torch.Tensor:
        """uint8 batch -> float batch minus the mean image; crop and flip when ``train``.

        ``aug`` holds each image's crop offsets and flip (:func:`draw_crop_flip`); without it they
        are drawn from the global generator. Augmented batches come out in channels-last layout.
        """
        if self.mean_image is None:
            raise RuntimeError("call setup() before preprocess()")
        mean = self._mean_on.get(x.device)
        if mean is None:
            mean = self._mean_on[x.device] = self.mean_image.to(x.device)
        x = x.float().div_(255.0).sub_(mean)
        if train and self.pad >= 0 and (self.pad or self.flip):
            if aug is None:
                aug = draw_crop_flip(len(x), self.pad, self.flip).to(x.device)
            x = crop_flip(x, aug[:, 0], aug[:, 1], aug[:, 2].bool(), self.pad)
        return x

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Lightning hook: preprocess each batch on the training device."""
        x, y, *aug = batch
        training = self.trainer is not None and self.trainer.training
        return self.preprocess(x, train=training, aug=aug[0] if aug else None), y
