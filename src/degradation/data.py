"""Data sets as uint8 tensors on the training device, with the paper's batch-level preprocessing.

Every data module keeps its images as one ``uint8`` tensor of shape (N, C, H, W) that is moved once
to the training device. Batches are index selections from it (:class:`DeviceBatches`: no
per-image Python, no worker processes) and only on the device turned into floats: the per-pixel
mean image of the training set is subtracted (Section 4.2) and, for training batches, each image
is padded by 4 pixels, cropped back to its size at a random offset and randomly flipped
horizontally, all in one batched operation. The order of an epoch and its crop offsets and flips
are drawn from a generator seeded by (shuffle seed, epoch), so a run's data stream is a function of
its seed alone and can be resumed mid-epoch.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


class DataUnavailableError(RuntimeError):
    """A data set is absent (or unreadable) and could not be obtained."""


# --------------------------------------------------------------------------------------------
# Batch preprocessing
# --------------------------------------------------------------------------------------------


def crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int
) -> torch.Tensor:
    """Zero-pad a batch by ``pad``, crop image i at offset (dy[i], dx[i]), then flip where ``flip``.

    The result equals torchvision's per-image ``RandomCrop(size, padding=pad)`` followed by
    ``RandomHorizontalFlip`` when they draw the same offsets and flips.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (n, h+2p, w+2p, c)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2)  # (n, c, h, w) view of NHWC memory: channels-last layout


def draw_crop_flip(
    n: int, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw the paper's augmentation for ``n`` images: an (n, 3) int64 tensor of row offset, column
    offset (each uniform in 0..2*pad) and flip (0 or 1, each with probability 1/2)."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n, 1), generator=generator) if flip else torch.zeros(n, 1)
    return torch.cat([offsets, flips.long()], dim=1)


def random_crop_flip(x: torch.Tensor, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """The paper's augmentation on a whole batch: pad, random crop to size, random h-flip."""
    aug = draw_crop_flip(x.shape[0], pad, flip).to(x.device)
    return crop_flip(x, aug[:, 0], aug[:, 1], aug[:, 2].bool(), pad)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch's shuffling and augmentation, distinct per (seed, epoch)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2)
    return int(state[0]) << 31 ^ int(state[1])


class DeviceBatches:
    """Batches of a data set held as tensors on one device, selected by index.

    Yields ``(images, labels)``, plus an (n, 3) tensor of crop offsets and flips per image when
    ``augment`` (see :func:`draw_crop_flip`). Each pass over the data is one epoch; its order and
    augmentation come from a generator seeded with :func:`epoch_seed` (seed, epoch). The position
    within the epoch is saved and restored by Lightning (``state_dict``/``load_state_dict``), so a
    run resumed from a mid-epoch checkpoint sees exactly the batches it would have seen.

    With ``num_replicas`` > 1 (multi-process training), ``batch_size`` is the global batch:
    every process draws the same epoch plan and takes its share (``rank``) of each global batch,
    so together the processes see exactly the stream of a single-process run. A final global
    batch with fewer images than processes is topped up from the start of the epoch's order.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment: bool = False,
        pad: int = 4,
        flip: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if not 0 <= rank < num_replicas or batch_size % num_replicas:
            raise ValueError(
                f"the global batch of {batch_size} cannot be shared evenly by {num_replicas} "
                f"processes (rank {rank}); choose a batch size divisible by the process count"
            )
        self.num_replicas, self.rank = num_replicas, rank
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.shuffle, self.seed, self.augment, self.pad, self.flip = (
            shuffle,
            seed,
            augment,
            pad,
            flip,
        )
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The order of one epoch and its augmentation parameters (by position), on the device."""
        n = len(self.images)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        aug = draw_crop_flip(n, self.pad, self.flip, generator) if self.augment else None
        device = self.images.device
        return order.to(device), (aug.to(device) if aug is not None else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.position >= len(self):  # the last epoch was used up (Lightning stops at its length)
            self.epoch, self.position = self.epoch + 1, 0
        epoch, start = self.epoch, self.position
        order, aug = self.plan(epoch)
        for b in range(start, len(self)):
            window = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if self.num_replicas > 1:
                window = self._share(window, len(order)).to(order.device)
            idx = order[window]
            self.position = b + 1
            if aug is None:
                yield self.images[idx], self.labels[idx]
            else:
                yield self.images[idx], self.labels[idx], aug[window]
        self.epoch, self.position = epoch + 1, 0

    def _share(self, window: slice, n: int) -> torch.Tensor:
        """This process's positions in one global batch."""
        positions = torch.arange(window.start, min(window.stop, n))
        if len(positions) < self.num_replicas:  # too few to share: top up from the start
            positions = torch.cat([positions, torch.arange(self.num_replicas - len(positions))])
        return positions.tensor_split(self.num_replicas)[self.rank]

    def state_dict(self) -> dict[str, int]:
        """Where the stream stands: the epoch and the number of its batches handed out."""
        if self.position >= len(self):
            return {"epoch": self.epoch + 1, "position": 0, "seed": self.seed}
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the stream from a saved :meth:`state_dict`."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"checkpoint's data stream has shuffle seed {state['seed']}, this run {self.seed}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def process_share(trainer: L.Trainer | None) -> tuple[int, int]:
    """(number of processes, this process's rank) of a multi-process run; (1, 0) otherwise."""
    if trainer is None:
        return 1, 0
    return trainer.world_size, trainer.global_rank


# --------------------------------------------------------------------------------------------
# File formats
# --------------------------------------------------------------------------------------------


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


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file of CIFAR-10's python version: images (N, 3, 32, 32) and labels (N,)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except Exception as err:  # noqa: BLE001 - any unpickling problem means a corrupt file
        raise DataUnavailableError(f"{path} is not a readable CIFAR-10 batch file: {err}") from err
    if len(data) != len(labels):
        raise DataUnavailableError(f"{path} is corrupt: {len(data)} images, {len(labels)} labels")
    return data, labels


# --------------------------------------------------------------------------------------------
# Data modules
# --------------------------------------------------------------------------------------------


class ImageDataModule(L.LightningDataModule):
    """Base class: images held as uint8 tensors, preprocessed per batch on the device.

    Subclasses implement :meth:`load`, returning (train_images, train_labels, test_images,
    test_labels) as tensors. ``val_size`` > 0 holds out that many training images (a fixed
    split) as a validation set, e.g. the paper's 45k/5k split with ``val_size=5000``.
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
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.pad, self.flip, self.split_seed = val_size, pad, flip, split_seed
        self.shuffle_seed = shuffle_seed
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
        if self.val_size:
            if self.val_size >= len(x):
                raise ValueError(f"val_size={self.val_size} leaves no training images")
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = order[: self.val_size], order[self.val_size :]
            self.eval_sets = {"test": TensorDataset(test_x, test_y)}
            self.eval_sets["val"] = TensorDataset(x[val_idx], y[val_idx])
            x, y = x[train_idx], y[train_idx]
        else:
            self.eval_sets = {"test": TensorDataset(test_x, test_y)}
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


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]


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
