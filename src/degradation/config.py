"""Typed schemas of the configuration groups users override (Hydra's ConfigStore).

Each YAML file of ``conf/`` starts from one of these schemas (``defaults: [<name>_schema,
_self_]``), so a value of the wrong type or a key that does not exist is refused while the
configuration is composed, before anything is written, and :func:`config_error_line` turns
Hydra's report into one line. Instantiation stays Hydra's ``_target_`` as before. The schemas
hold exactly the keys of the YAML files (plus Trainer options users may set), so run
directories keep their names; no torch import here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from degradation import paper
from degradation.designs import schema_fields
from degradation.rundirs import run_dir_name, run_name

# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------


def _cifar_schema(name: str, residual: bool, doc: str) -> type:
    """The schema of ``model=plain`` or ``model=resnet``: the builder, depth, residual, width,
    and the fields of the design options (:func:`degradation.designs.schema_fields`)."""
    fields = [
        ("_target_", str, field(default="degradation.models.cifar_net")),
        ("depth", int, field(default=20)),
        ("residual", bool, field(default=residual)),
        ("width", int, field(default=16)),
        *schema_fields(residual),
    ]
    return dataclasses.make_dataclass(name, fields, namespace={"__doc__": doc})


PlainNetSchema = _cifar_schema("PlainNetSchema", False, "``model=plain``: no shortcuts.")
ResNetSchema = _cifar_schema(
    "ResNetSchema", True, "``model=resnet|resnet_b|resnet_c``: the 6n+2 family, shortcut A, B or C."
)


@dataclass
class DenseNetSchema:
    """``model=densenet``: DenseNet-BC for small images (Huang et al. 2017)."""

    _target_: str = "degradation.models.densenet"
    # 6n+4: 3 dense blocks of n bottleneck layers (2 convs each), stem, 2 transitions, FC
    depth: int = 100
    growth_rate: int = paper.DENSE_GROWTH_RATE
    compression: float = paper.DENSE_COMPRESSION
    norm: str = "batch"


@dataclass
class ImageNetNetSchema:
    """``model=plain_imagenet|resnet_imagenet``: ResNet-18/34/50/101/152 and plain twins."""

    _target_: str = "degradation.models.imagenet_net"
    depth: int = 18
    residual: bool = True
    stem: str = "imagenet"
    width: int = 64
    stride_in_1x1: bool = False
    norm: str = "batch"


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


@dataclass
class _InMemoryData:
    batch_size: int = 128
    eval_batch_size: int = 128
    val_size: int = 0
    # a fixed subset of this many training images (drawn once, as val_size's); 0: all of them
    train_size: int = 0
    pad: int = 4
    flip: bool = True
    shuffle_seed: int = 0


@dataclass
class SyntheticSchema(_InMemoryData):
    """``data=synthetic``."""

    _target_: str = "degradation.data.SyntheticDataModule"
    num_train: int = 2048
    num_test: int = 512
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    noise: float = 60.0
    seed: int = 0


@dataclass
class FashionMNISTSchema(_InMemoryData):
    """``data=fashion_mnist``."""

    _target_: str = "degradation.data.FashionMNISTDataModule"
    data_dir: str = MISSING
    search_dirs: list[str] = field(default_factory=list)
    download: bool = True


@dataclass
class CIFAR10Schema(_InMemoryData):
    """``data=cifar10``."""

    _target_: str = "degradation.data.CIFAR10DataModule"
    data_dir: str = MISSING
    download: bool = True


@dataclass
class ImageFolderSchema:
    """``data=imagenet``: class folders decoded by DataLoader workers."""

    _target_: str = "degradation.data.ImageFolderDataModule"
    data_dir: str = MISSING
    train_dir: str = "train"
    test_dir: str = "val"
    image_size: int = 224
    resize: int = 256
    batch_size: int = 256
    eval_batch_size: int = 256
    num_workers: int = 8
    shuffle_seed: int = 0


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


@dataclass
class SGDSchema:
    """``optimizer=sgd``: completed with the parameters inside the LightningModule."""

    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False


@dataclass
class PaperScheduleSchema:
    """``scheduler=paper``: step decay in iterations, optional warm-up."""

    _target_: str = "degradation.module.paper_schedule"
    _partial_: bool = True
    milestones: list[int] = field(default_factory=lambda: [32000, 48000])
    gamma: float = 0.1
    warmup_steps: int = 0
    warmup_factor: float = 0.1


@dataclass
class TrainerSchema:
    """``trainer=default``: the Lightning Trainer options this suite uses or documents."""

    _target_: str = "pytorch_lightning.Trainer"
    max_steps: int = 64000
    max_epochs: int = -1
    accelerator: str = "auto"
    # an int, a list of device indices, "auto" or "-1"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    precision: str = "auto"
    benchmark: bool = True
    deterministic: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: Any = None
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 1
    enable_model_summary: bool = False
    enable_checkpointing: bool = False
    enable_progress_bar: bool = True
    gradient_clip_val: Any = None
    default_root_dir: Any = None


@dataclass
class SpeedSchema:
    """``speed.*``: how fast, never what is computed."""

    # true, false or "auto"
    channels_last: Any = "auto"
    compile: bool = False


@dataclass
class ScheduleSchema:
    """``schedule.*``: the training budget as one knob (see :func:`apply_budget`)."""

    # Iterations of training; null: trainer.max_steps and scheduler.milestones as given.
    budget: int | None = None
    # Evaluations on the test set during a budgeted run (eval_every = budget / evaluations).
    evaluations: int = 8


# The paper's learning-rate drops as fractions of its budget (32k and 48k of 64k iterations).
DROP_FRACTIONS = (0.5, 0.75)


def apply_budget(cfg: DictConfig) -> None:
    """Set the schedule from ``schedule.budget`` (in place), when it is given.

    ``trainer.max_steps`` becomes the budget, the learning-rate drops land at its 50% and 75%
    (as the paper's 32k and 48k of 64k), and ``eval_every`` is budget / ``evaluations``, so
    every budget is evaluated equally often and both drops fall on an evaluation. Warm-up
    (``scheduler.warmup_steps``) and the gradient log's spacing stay in iterations: they are
    about the start of training and the cost per iteration, not its length.
    """
    schedule = cfg.get("schedule") or {}
    budget = schedule.get("budget")
    if budget is None:
        return
    evaluations = schedule.get("evaluations", 8)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 4:
        raise ValueError(f"schedule.budget={budget!r}: must be a number of iterations, at least 4")
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 1:
        raise ValueError(f"schedule.evaluations={evaluations!r}: must be a positive count")
    milestones = [round(budget * f) for f in DROP_FRACTIONS]
    warmup = OmegaConf.select(cfg, "scheduler.warmup_steps", default=0) or 0
    if warmup >= milestones[0]:
        raise ValueError(
            f"schedule.budget={budget}: scheduler.warmup_steps={warmup} reaches the first "
            f"learning-rate drop at {milestones[0]}; give a longer budget or a shorter warm-up"
        )
    cfg.trainer.max_steps = budget
    if cfg.get("scheduler") is not None:
        cfg.scheduler.milestones = milestones
    cfg.eval_every = max(1, budget // evaluations)


@dataclass
class TrainSchema:
    """The top level of ``conf/train.yaml``; the groups carry their own schemas."""

    data: Any = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    callbacks: Any = None
    logger: Any = None
    seed: int = 0
    eval_every: int = 1000
    data_dir: str = "data"
    threads: int | None = None
    speed: SpeedSchema = field(default_factory=SpeedSchema)
    schedule: ScheduleSchema = field(default_factory=ScheduleSchema)


SCHEMAS: dict[tuple[str | None, str], type] = {
    (None, "train_schema"): TrainSchema,
    ("model", "plain_schema"): PlainNetSchema,
    ("model", "resnet_schema"): ResNetSchema,
    ("model", "imagenet_net_schema"): ImageNetNetSchema,
    ("model", "densenet_schema"): DenseNetSchema,
    ("data", "synthetic_schema"): SyntheticSchema,
    ("data", "fashion_mnist_schema"): FashionMNISTSchema,
    ("data", "cifar10_schema"): CIFAR10Schema,
    ("data", "imagenet_schema"): ImageFolderSchema,
    ("optimizer", "sgd_schema"): SGDSchema,
    ("scheduler", "paper_schema"): PaperScheduleSchema,
    ("trainer", "trainer_schema"): TrainerSchema,
}


def paper_warmup(
    depth: int, steps: int = paper.WARMUP_STEPS, from_depth: int = paper.WARMUP_FROM_DEPTH
) -> int:
    """The paper's warm-up length for a net of this depth: 400 iterations from 110 layers on."""
    return steps if int(depth) >= from_depth else 0


def register_resolvers() -> None:
    """Make ``${run_dir_name:...}``, ``${run_name:...}`` and ``${paper_warmup:...}`` available."""
    OmegaConf.register_new_resolver("run_dir_name", run_dir_name, replace=True)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("paper_warmup", paper_warmup, replace=True)


def register() -> None:
    """Make the schemas and the ``${run_dir_name:...}`` resolvers available to Hydra."""
    register_resolvers()
    store = ConfigStore.instance()
    for (group, name), schema in SCHEMAS.items():
        store.store(group=group, name=name, node=schema)


TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainSchema))


def check_keys(cfg: DictConfig) -> None:
    """Refuse keys that a group's schema does not have (``+model.foo=1`` gets past Hydra)."""
    for key in cfg:
        if key not in TRAIN_KEYS:
            raise ValueError(
                f"{key}: no such key at the top level (expected one of: {', '.join(TRAIN_KEYS)})"
            )
    for group in ("model", "data", "optimizer", "scheduler", "trainer", "speed", "schedule"):
        node = cfg.get(group)
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if schema is None or not dataclasses.is_dataclass(schema):
            continue
        known = [f.name for f in dataclasses.fields(schema)]
        for key in node:
            if key not in known:
                expected = ", ".join(k for k in known if not k.startswith("_"))
                raise ValueError(
                    f"{group}.{key}: no such key in {schema.__name__} (expected one of: {expected})"
                )


def config_error_line(err: BaseException) -> str:
    """One line for a composition error: the key, the value and what was expected."""
    text = str(err).strip()
    if "Could not find" in text and "Available options" in text:
        head, _, options = text.partition("Available options")
        group, _, names = options.partition("Config search path")[0].partition(":")
        names = [n.strip() for n in names.split() if n.strip() and not n.endswith("_schema")]
        return f"configuration error: {head.strip()}; available options{group}: {', '.join(names)}"
    cause = err
    while cause.__cause__ is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__
    lines = str(cause).strip().splitlines()
    message = lines[0] if lines else type(cause).__name__
    key = getattr(cause, "full_key", None)
    if key and key not in message:
        message = f"{key}: {message}"
    schema = getattr(cause, "object_type", None)
    if "not in" in message and dataclasses.is_dataclass(schema):
        keys = [f.name for f in dataclasses.fields(schema) if not f.name.startswith("_")]
        message += f" (expected one of: {', '.join(keys)})"
    return f"configuration error: {message}"


def _is_multirun(overrides: list[str], conf_dir: Path, config_name: str) -> bool:
    """Whether these overrides make a sweep by configuration (an experiment's ``hydra.mode``),
    read from the composition of their group choices and Hydra keys alone."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    kept = []
    for text in overrides:
        override = parser.parse_override(text)
        group = not override.is_hydra_override() and (conf_dir / override.key_or_group).is_dir()
        if override.is_hydra_override() or group:
            kept.append(text)
    register()
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=kept, return_hydra_config=True)
    except Exception:  # noqa: BLE001 - Hydra itself will report what is wrong
        return False
    return str(cfg.hydra.get("mode")) == "MULTIRUN"


def per_job_overrides(
    args: list[str], conf_dir: str | Path, config_name: str = "train"
) -> list[str]:
    """Command-line arguments with which every job of a sweep is composed and checked on its own.

    Hydra composes a sweep's base configuration without the swept values, so a key that only
    the swept choices have (``-m model=resnet_imagenet,plain_imagenet model.stem=small``: the
    default model has no ``stem``) is refused before any job exists. In a sweep, each setting
    of a key is therefore handed to the sweeper as a choice of one value
    (``model.stem=choice(small)``): every job gets it exactly as before, and each job's own
    composition is what the typed check judges. Group choices, deletions, Hydra's keys and
    flags stay as they are; outside a sweep nothing changes.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    conf_dir = Path(conf_dir)
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    multirun = any(a in ("-m", "--multirun") for a in args)
    parser = OverridesParser.create()
    candidates = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
        except Exception:  # noqa: BLE001 - Hydra itself will report the bad override
            return args
        if (
            override.is_sweep_override()
            or override.is_hydra_override()
            or override.is_delete()
            or (conf_dir / override.key_or_group).is_dir()  # a config group's choice
            or override.value() in (None, "")  # choice(null) and choice() are not legal
        ):
            continue
        candidates.append((text, override))
    if not candidates or not (multirun or _is_multirun(overrides, conf_dir, config_name)):
        return args
    rewritten = {
        text: f"{o.get_key_element()}=choice({o.get_value_element_as_str()})"
        for text, o in candidates
    }
    return [rewritten.get(a, a) for a in args]
