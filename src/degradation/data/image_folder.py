"""Images in class folders (ImageNet's layout), decoded per image by DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader

from degradation.data.base import DataUnavailableError
from degradation.data.loader import process_share

# ImageNet's per-channel statistics (RGB, 0..1), as torchvision's pretrained models use.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderDataModule(L.LightningDataModule):
    """Images in class folders, ``data_dir/<train_dir>/<class>/*.jpg`` and the same for the test
    set (torchvision's ``ImageFolder`` layout, e.g. ImageNet's train/ and val/).

    Training: random-resized crop to ``image_size`` and horizontal flip; test: resize the shorter
    side to ``resize`` and take the central ``image_size`` crop; both normalised with ImageNet's
    mean and std. Too large to keep in memory, so images are decoded per image by DataLoader
    workers.
    """

    name = "imagenet"
    in_channels = 3

    def __init__(
        self,
        data_dir: str = "data/imagenet",
        train_dir: str = "train",
        test_dir: str = "val",
        image_size: int = 224,
        resize: int = 256,
        batch_size: int = 256,
        eval_batch_size: int = 256,
        num_workers: int = 8,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be positive")
        if image_size < 8 or resize < image_size:
            raise ValueError(f"need 8 <= image_size <= resize; got {image_size}, {resize}")
        self.data_dir, self.train_dir, self.test_dir = Path(data_dir), train_dir, test_dir
        self.image_size, self.resize = image_size, resize
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.shuffle_seed = num_workers, shuffle_seed
        self.train_set = None
        self.eval_sets: dict = {}
        self.num_classes = 0

    @property
    def eval_names(self) -> list[str]:
        return ["test"]

    def prepare_data(self) -> None:
        """Check that both folders are there (nothing can be downloaded)."""
        for sub in (self.train_dir, self.test_dir):
            folder = self.data_dir / sub
            if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
                raise DataUnavailableError(
                    f"no class folders in {folder}. The image-folder data set needs "
                    f"{self.data_dir}/{self.train_dir}/<class>/<images> and "
                    f"{self.data_dir}/{self.test_dir}/<class>/<images> (for ImageNet: the "
                    "ILSVRC-2012 train and val images, val sorted into class folders); point "
                    "data.data_dir at it."
                )

    def transforms(self, train: bool):
        """The standard ImageNet training or test transform at this module's sizes."""
        from torchvision import transforms as T

        if train:
            steps = [T.RandomResizedCrop(self.image_size), T.RandomHorizontalFlip()]
        else:
            steps = [T.Resize(self.resize), T.CenterCrop(self.image_size)]
        return T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from torchvision.datasets import ImageFolder

        self.prepare_data()
        try:
            train = ImageFolder(str(self.data_dir / self.train_dir), self.transforms(True))
            test = ImageFolder(str(self.data_dir / self.test_dir), self.transforms(False))
        except (FileNotFoundError, OSError) as err:
            raise DataUnavailableError(f"cannot read the image folders: {err}") from err
        if train.classes != test.classes:
            raise DataUnavailableError(
                f"train and test folders have different classes: {len(train.classes)} in "
                f"{train.root}, {len(test.classes)} in {test.root}"
            )
        self.train_set, self.eval_sets = train, {"test": test}
        self.num_classes = len(train.classes)

    def _loader(self, dataset, batch_size: int, train: bool) -> DataLoader:
        cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=self.num_workers,
            pin_memory=cuda,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.shuffle_seed) if train else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Each process loads batch_size / processes images (Lightning gives each its share of
        the images), so the global batch stays ``batch_size``."""
        world, _ = process_share(self.trainer)
        if self.batch_size % world:
            raise ValueError(
                f"the global batch of {self.batch_size} cannot be shared evenly by {world} "
                "processes; choose a batch size divisible by the process count"
            )
        return self._loader(self.train_set, self.batch_size // world, train=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.eval_sets["test"], self.eval_batch_size, train=False)]

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_sets["test"], self.eval_batch_size, train=False)
