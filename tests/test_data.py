"""Data modules on synthetic data and on small files in the real formats, written here."""

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from degradation.data import (
    CIFAR10_FOLDER,
    FASHION_MNIST_SYSTEM_DIR,
    CIFAR10DataModule,
    DataUnavailableError,
    DeviceBatches,
    FashionMNISTDataModule,
    SyntheticDataModule,
    crop_flip,
    draw_crop_flip,
    random_crop_flip,
    read_idx,
    write_idx,
)


def write_fashion_mnist(directory: Path, n_train=50, n_test=20, gz=True, seed=0) -> dict:
    """Write the four Fashion-MNIST IDX files (real format) with random content."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(directory / (name + (".gz" if gz else "")), array)
    return arrays


def test_idx_files_are_in_the_real_format(tmp_path):
    # Header: two zero bytes, type 0x08 (ubyte), ndim, then big-endian int32 dims.
    write_idx(tmp_path / "x-idx3-ubyte", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    raw = (tmp_path / "x-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert raw[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04"
    assert raw[16:] == bytes(range(24))
    expected = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte"), expected)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, gz):
    arrays = write_fashion_mnist(tmp_path, gz=gz)
    dm = FashionMNISTDataModule(
        data_dir=str(tmp_path), search_dirs=[], download=False, batch_size=16
    )
    dm.setup("fit")
    x, y = dm.train_set.tensors
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y.numpy(), arrays["train-labels-idx1-ubyte"])
    assert dm.eval_sets["test"].tensors[0].shape == (20, 1, 28, 28)
    torch.testing.assert_close(dm.mean_image, x.float().mean(0) / 255)
    xb, yb, aug = next(iter(dm.train_dataloader()))
    assert xb.shape == (16, 1, 28, 28) and yb.shape == (16,) and aug.shape == (16, 3)
    assert sum(len(b[1]) for b in dm.train_dataloader()) == 50


def test_fashion_mnist_in_torchvision_layout_and_search_dirs(tmp_path):
    write_fashion_mnist(tmp_path / "data" / "FashionMNIST" / "raw")
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "data"), search_dirs=[], download=False)
    dm.setup()
    assert len(dm.train_set) == 50
    write_fashion_mnist(tmp_path / "system", n_train=30)
    dm = FashionMNISTDataModule(
        data_dir=str(tmp_path / "empty"), search_dirs=[str(tmp_path / "system")], download=False
    )
    dm.setup()
    assert len(dm.train_set) == 30


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_fix(tmp_path):
    dm = FashionMNISTDataModule(
        data_dir=str(tmp_path / "nothing"), search_dirs=[str(tmp_path / "sys")], download=False
    )
    with pytest.raises(DataUnavailableError) as info:
        dm.setup()
    message = str(info.value)
    assert str(tmp_path / "nothing") in message and str(tmp_path / "sys") in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download disabled" in message


def test_corrupt_idx_file_is_reported(tmp_path):
    write_fashion_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), search_dirs=[], download=False)
    with pytest.raises(DataUnavailableError, match="corrupt"):
        dm.setup()
    path.write_bytes(b"not an idx file at all")
    with pytest.raises(DataUnavailableError, match="bad header"):
        read_idx(path)


def write_cifar10(root: Path, per_batch=8, n_test=6, seed=0) -> np.ndarray:
    """Write CIFAR-10's python-version batch files (pickled dicts of bytes keys)."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    first = None
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        first = data if first is None else first
    return first


def test_cifar10_from_batch_files(tmp_path):
    first = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False, val_size=10)
    dm.setup()
    assert len(dm.train_set) == 30 and len(dm.eval_sets["val"]) == 10
    assert len(dm.eval_sets["test"]) == 6
    assert dm.eval_names == ["test", "val"]
    x = dm.train_set.tensors[0]
    assert x.shape[1:] == (3, 32, 32)
    # Row-major 3072 bytes = 3 planes of 32x32 (R, G, B).
    all_train = torch.cat([dm.train_set.tensors[0], dm.eval_sets["val"].tensors[0]])
    image0 = torch.from_numpy(first[0].reshape(3, 32, 32))
    assert any(torch.equal(image0, img) for img in all_train)


def test_missing_cifar10_explains_how_to_provide_it(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(DataUnavailableError, match="cs.toronto.edu/~kriz/cifar.html"):
        dm.prepare_data()


def test_corrupt_cifar10_batch_is_reported(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / CIFAR10_FOLDER / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataUnavailableError, match="data_batch_3"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).setup()


def test_a_cifar10_batch_file_with_a_pickled_call_is_refused(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / CIFAR10_FOLDER / "test_batch", "wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [0]}, f)
    with pytest.raises(DataUnavailableError, match="test_batch.*refused: it holds posix.system"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).setup()
    assert not marker.exists()


def test_synthetic_is_deterministic_and_shaped():
    a = SyntheticDataModule(num_train=64, num_test=32, seed=3)
    b = SyntheticDataModule(num_train=64, num_test=32, seed=3)
    c = SyntheticDataModule(num_train=64, num_test=32, seed=4)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])
    assert not torch.equal(a.train_set.tensors[0], c.train_set.tensors[0])
    assert a.train_set.tensors[0].shape == (64, 3, 32, 32)
    gray = SyntheticDataModule(num_train=8, num_test=8, image_size=28, in_channels=1)
    gray.setup()
    assert gray.train_set.tensors[0].shape == (8, 1, 28, 28) and gray.in_channels == 1


def test_crop_flip_matches_per_image_torchvision_reference():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32)
    dy = torch.tensor([0, 8, 4, 1, 7, 3])
    dx = torch.tensor([8, 0, 4, 2, 5, 6])
    flip = torch.tensor([True, False, True, False, True, True])
    out = crop_flip(x, dy, dx, flip, pad=4)
    for i in range(6):
        # torchvision's RandomCrop(32, padding=4) pads with zeros, then crops at (top, left).
        ref = TF.crop(TF.pad(x[i], [4]), int(dy[i]), int(dx[i]), 32, 32)
        if flip[i]:
            ref = TF.hflip(ref)
        torch.testing.assert_close(out[i], ref, rtol=0, atol=0)


def test_random_crop_flip_draws_all_offsets_and_both_flips():
    torch.manual_seed(0)
    # An image that encodes its own coordinates: the crop offset can be read off pixel (0, 0).
    n, size, pad = 4000, 8, 4
    grid = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size) + 1
    out = random_crop_flip(grid.expand(n, 1, size, size).clone(), pad=pad)
    assert out.shape == (n, 1, size, size)
    # Where the crop stays inside the image, horizontal neighbours differ by +1 or -1 (flip).
    inner = out[:, 0, 4, 3:5]
    step = inner[:, 1] - inner[:, 0]
    both_nonzero = (inner != 0).all(dim=1)
    frac_flipped = (step[both_nonzero] == -1).float().mean().item()
    assert 0.45 < frac_flipped < 0.55
    zero_rows = (out[:, 0].sum(dim=2) == 0).sum(dim=1)  # rows entirely in the padding
    assert set(zero_rows.tolist()) == set(range(0, pad + 1))


def test_preprocess_subtracts_mean_image_and_augments_only_in_training():
    dm = SyntheticDataModule(num_train=32, num_test=8, pad=4)
    dm.setup()
    x = dm.eval_sets["test"].tensors[0]
    evaluated = dm.preprocess(x, train=False)
    torch.testing.assert_close(evaluated, x.float() / 255 - dm.mean_image)
    torch.manual_seed(0)
    trained = dm.preprocess(x, train=True)
    assert trained.shape == evaluated.shape and not torch.equal(trained, evaluated)


def test_batched_augmentation_equals_per_image_torchvision_on_the_same_draws():
    """The training data path (device batches + preprocess) against torchvision, image by image."""
    dm = SyntheticDataModule(num_train=40, num_test=8, batch_size=16, pad=4, shuffle_seed=5)
    dm.setup()
    checked = 0
    for x, _y, aug in dm.train_dataloader():
        out = dm.preprocess(x, train=True, aug=aug)
        assert out.is_contiguous(memory_format=torch.channels_last)
        for i in range(len(x)):
            image = x[i].float() / 255 - dm.mean_image
            ref = TF.crop(TF.pad(image, [4]), int(aug[i, 0]), int(aug[i, 1]), 32, 32)
            if aug[i, 2]:
                ref = TF.hflip(ref)
            torch.testing.assert_close(out[i], ref, rtol=0, atol=0)
            checked += 1
    assert checked == 40


def test_drawn_augmentation_has_the_papers_distribution():
    aug = draw_crop_flip(90000, pad=4, flip=True, generator=torch.Generator().manual_seed(0))
    for column in (0, 1):  # offsets 0..8, uniform: each about 1/9 of the draws
        counts = torch.bincount(aug[:, column], minlength=9)
        assert len(counts) == 9 and (counts - 10000).abs().max() < 500
    assert abs(aug[:, 2].float().mean().item() - 0.5) < 0.01
    assert (draw_crop_flip(100, pad=4, flip=False)[:, 2] == 0).all()


def stream(loader: DeviceBatches, batches: int) -> list[torch.Tensor]:
    out = []
    while len(out) < batches:
        for batch in loader:
            out.append(torch.cat([batch[1][:, None], batch[2]], dim=1))
            if len(out) == batches:
                break
    return out


def test_device_batches_cover_each_epoch_and_depend_only_on_the_seed():
    images, labels = torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10)

    def loader(seed):
        return DeviceBatches(images, labels, 4, shuffle=True, seed=seed, augment=True)

    assert len(loader(0)) == 3
    first, second = stream(loader(0), 6)[:3], stream(loader(0), 6)[3:]
    epochs = [torch.cat([b[:, 0] for b in part]) for part in (first, second)]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(10))  # every image once per epoch
    assert not torch.equal(epochs[0], epochs[1])  # a new order each epoch
    same, other = stream(loader(0), 6), stream(loader(1), 6)
    assert all(torch.equal(a, b) for a, b in zip(same, first + second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(other, first + second, strict=True))


@pytest.mark.parametrize("stop", [2, 3, 4])  # mid-epoch, at the epoch's end, in the next epoch
def test_device_batches_resume_from_state_dict(stop):
    images, labels = torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10)
    whole = stream(DeviceBatches(images, labels, 4, shuffle=True, seed=3, augment=True), 8)
    interrupted = DeviceBatches(images, labels, 4, shuffle=True, seed=3, augment=True)
    before = stream(interrupted, stop)
    resumed = DeviceBatches(images, labels, 4, shuffle=True, seed=3, augment=True)
    resumed.load_state_dict(interrupted.state_dict())
    after = stream(resumed, 8 - stop)
    assert all(torch.equal(a, b) for a, b in zip(before + after, whole, strict=True))
    with pytest.raises(ValueError, match="shuffle seed"):
        DeviceBatches(images, labels, 4, seed=4).load_state_dict(interrupted.state_dict())


NO_DEBIAN_DATA = not Path(FASHION_MNIST_SYSTEM_DIR).is_dir()


@pytest.mark.skipif(NO_DEBIAN_DATA, reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian_package(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), download=False)
    dm.setup()
    assert dm.train_set.tensors[0].shape == (60000, 1, 28, 28)
    assert dm.eval_sets["test"].tensors[0].shape == (10000, 1, 28, 28)
    assert torch.bincount(dm.train_set.tensors[1]).tolist() == [6000] * 10
    with gzip.open(Path(FASHION_MNIST_SYSTEM_DIR) / "t10k-labels-idx1-ubyte.gz") as f:
        assert f.read(4) == b"\x00\x00\x08\x01"
