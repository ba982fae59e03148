"""Fashion-MNIST from its original IDX files (Debian's dataset-fashion-mnist, a folder, or a
torchvision download), and the IDX format itself."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from degradation.data.base import DataUnavailableError, ImageDataModule

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (plain or gzipped), as used by (Fashion-)MNIST."""
    path = Path(path)
    try:
        with _open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataUnavailableError(f"cannot read {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataUnavailableError(f"{path} is not an IDX file of unsigned bytes (bad header)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataUnavailableError(f"{path} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise DataUnavailableError(
            f"{path} is corrupt: header promises {size} bytes of data, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped if the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data + array.tobytes())


FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST IDX files in ``directory`` (plain or .gz), or None."""
    found = {}
    for key, stem in FASHION_MNIST_FILES.items():
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST, 28x28 grayscale, with the same pipeline as CIFAR-10.

    Looks for the original IDX files in ``data_dir`` (also torchvision's
    ``data_dir/FashionMNIST/raw``), then in ``search_dirs`` (Debian's ``dataset-fashion-mnist``
    by default), then downloads them with torchvision into ``data_dir`` if ``download``.
    """

    name = "fashion_mnist"
    in_channels = 1
    num_classes = 10
    image_size = 28

    def __init__(
        self,
        data_dir: str = "data",
        search_dirs: Sequence[str] = (FASHION_MNIST_SYSTEM_DIR,),
        download: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir, self.search_dirs, self.download = Path(data_dir), search_dirs, download

    def candidate_dirs(self) -> list[Path]:
        """Where the IDX files are looked for, in order."""
        return [self.data_dir, self.data_dir / "FashionMNIST" / "raw"] + [
            Path(d) for d in self.search_dirs
        ]

    def locate(self) -> dict[str, Path]:
        """Find the IDX files, downloading them if allowed; raise DataUnavailableError if not."""
        for directory in self.candidate_dirs():
            files = find_idx_files(directory)
            if files:
                return files
        problem = "download disabled (data.download=false)"
        if self.download:
            try:
                from torchvision.datasets import FashionMNIST

                FashionMNIST(str(self.data_dir), train=True, download=True)
                FashionMNIST(str(self.data_dir), train=False, download=True)
                files = find_idx_files(self.data_dir / "FashionMNIST" / "raw")
                if files:
                    return files
                problem = "download finished but the files were not where expected"
            except Exception as err:  # noqa: BLE001 - network errors come in many types
                problem = f"download failed: {type(err).__name__}: {err}"
        looked = "\n  ".join(str(d) for d in self.candidate_dirs())
        raise DataUnavailableError(
            f"Fashion-MNIST not found. Looked for {', '.join(FASHION_MNIST_FILES.values())} "
            f"(optionally .gz) in:\n  {looked}\nand {problem}.\n"
            "Provide it by: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copying "
            "the four IDX files into data_dir, or running once with network access "
            "(data.download=true)."
        )

    def prepare_data(self) -> None:
        self.locate()

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        files = self.locate()
        arrays = {key: read_idx(path) for key, path in files.items()}
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataUnavailableError(
                    f"Fashion-MNIST {split} files disagree: images {images.shape}, "
                    f"labels {labels.shape} ({files[f'{split}_images'].parent})"
                )
        self.image_size = int(arrays["train_images"].shape[1])
        return (
            torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1),
            torch.from_numpy(arrays["train_labels"].astype(np.int64)),
            torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1),
            torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        )
