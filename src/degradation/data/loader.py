"""The device-resident loader: batches as index selections from tensors on the training device,
the paper's augmentation drawn per epoch from (seed, epoch), and each process's share of a
global batch in multi-process runs."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytorch_lightning as L
import torch
import torch.nn.functional as F


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
