"""CIFAR-10 from its python-version batch files, downloaded by torchvision when absent."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from degradation.data.base import DataUnavailableError, ImageDataModule

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch file holds (dicts, lists, bytes, numpy arrays) and
    refuses any other global: a batch file from elsewhere cannot run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol 2 spells bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused: it holds {module}.{name}, not only arrays")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of CIFAR-10's python version: images (N, 3, 32, 32) and labels (N,)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="bytes").load()
        data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except Exception as err:  # noqa: BLE001 - any unpickling problem means a corrupt file
        raise DataUnavailableError(f"{path} is not a readable CIFAR-10 batch file: {err}") from err
    if len(data) != len(labels):
        raise DataUnavailableError(f"{path} is corrupt: {len(data)} images, {len(labels)} labels")
    return data, labels


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (python version), downloaded by torchvision into ``data_dir`` when absent."""

    name = "cifar10"
    in_channels = 3
    num_classes = 10
    image_size = 32

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir, self.download = Path(data_dir), download

    @property
    def folder(self) -> Path:
        """The folder that holds the batch files."""
        return self.data_dir / CIFAR10_FOLDER

    def _present(self) -> bool:
        return all((self.folder / f).is_file() for f in CIFAR10_TRAIN + CIFAR10_TEST)

    def prepare_data(self) -> None:
        """Download and extract CIFAR-10 into ``data_dir`` unless it is already there."""
        if self._present():
            return
        problem = "download disabled (data.download=false)"
        if self.download:
            try:
                from torchvision.datasets import CIFAR10

                CIFAR10(str(self.data_dir), train=True, download=True)
                if self._present():
                    return
                problem = "download finished but the files were not where expected"
            except Exception as err:  # noqa: BLE001 - network errors come in many types
                problem = f"download failed: {type(err).__name__}: {err}"
        raise DataUnavailableError(
            f"CIFAR-10 not found: expected {', '.join(CIFAR10_TRAIN + CIFAR10_TEST)} in "
            f"{self.folder}, and {problem}.\nProvide it by downloading cifar-10-python.tar.gz "
            "from https://www.cs.toronto.edu/~kriz/cifar.html and extracting it into "
            f"{self.data_dir} (or point data_dir=... at a folder that holds {CIFAR10_FOLDER}/)."
        )

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        self.prepare_data()

        def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            parts = [read_cifar_batch(self.folder / n) for n in names]
            images = np.concatenate([p[0] for p in parts])
            labels = np.concatenate([p[1] for p in parts])
            return torch.from_numpy(images), torch.from_numpy(labels)

        return (*read(CIFAR10_TRAIN), *read(CIFAR10_TEST))
