"""Data sets as uint8 tensors on the training device, with the paper's batch-level preprocessing.

Every in-memory data module keeps its images as one ``uint8`` tensor of shape (N, C, H, W) that
is moved once to the training device. Batches are index selections from it
(:class:`DeviceBatches`: no per-image Python, no worker processes) and only on the device turned
into floats: the per-pixel mean image of the training set is subtracted (Section 4.2) and, for
training batches, each image is padded by 4 pixels, cropped back to its size at a random offset
and randomly flipped horizontally, all in one batched operation. The order of an epoch and its
crop offsets and flips are drawn from a generator seeded by (shuffle seed, epoch), so a run's
data stream is a function of its seed alone and can be resumed mid-epoch.

One module per source (``synthetic``, ``fashion_mnist``, ``cifar10``, ``image_folder``), the
in-memory base (``base``) and the loader (``loader``). Configs name the classes as
``degradation.data.<Class>``, as before the split, so run directories keep their names.
"""

from degradation.data.base import DataUnavailableError, ImageDataModule
from degradation.data.cifar10 import (
    CIFAR10_FOLDER,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    CIFAR10DataModule,
    read_cifar_batch,
)
from degradation.data.fashion_mnist import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_SYSTEM_DIR,
    FashionMNISTDataModule,
    find_idx_files,
    read_idx,
    write_idx,
)
from degradation.data.image_folder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataModule
from degradation.data.loader import (
    DeviceBatches,
    crop_flip,
    draw_crop_flip,
    epoch_seed,
    process_share,
    random_crop_flip,
)
from degradation.data.synthetic import SyntheticDataModule

__all__ = [
    "CIFAR10_FOLDER",
    "CIFAR10_TEST",
    "CIFAR10_TRAIN",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SYSTEM_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR10DataModule",
    "DataUnavailableError",
    "DeviceBatches",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "SyntheticDataModule",
    "crop_flip",
    "draw_crop_flip",
    "epoch_seed",
    "find_idx_files",
    "process_share",
    "random_crop_flip",
    "read_cifar_batch",
    "read_idx",
    "write_idx",
]
