"""The design options of the CIFAR family, one table (no torch here).

Each :class:`Option` is one ``model.*`` key of ``model=plain|resnet``: its choices (or the rule
for a number), its default (the 2015 net), whether only residual nets have it, which shortcut
variant it is a setting of, and the part it adds to a run's name. Everything else derives from
:data:`OPTIONS`: the :class:`Design` the builder takes, the Hydra schema fields
(:func:`schema_fields`), the checks (:func:`check_design`), the hash defaults that keep earlier
run names (:data:`HASH_DEFAULTS`), the run-name parts (:func:`name_parts`) and the run table's
columns (:func:`design_fields`). A new option is one entry here, plus its code in
``models/cifar.py`` (and, for a new shortcut variant, its shortcut map in ``models/layers.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from degradation import paper


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dash(value: Any) -> str:
    return f"-{value}"


@dataclass(frozen=True)
class Option:
    """One design option: a key of the model configuration."""

    key: str
    default: Any
    doc: str
    # the allowed values; None: any value that ``valid`` accepts
    choices: tuple[Any, ...] | None = None
    valid: Callable[[Any], bool] | None = None
    expected: str = ""
    # only residual nets have it (``model=resnet``'s schema, not ``model=plain``'s)
    residual_only: bool = False
    # a setting of these shortcut variants (it means nothing for the others)
    variant_of: tuple[str, ...] = ()
    # the run-name part for a value other than the default
    name: Callable[[Any], str] | None = _dash
    # added after runs were first named: left out of the hash while it holds its default
    hash_default: bool = True
    # a column of the run table (the settings of a variant are columns too)
    column: bool = True

    def check(self, value: Any) -> None:
        """Refuse a value this option does not take, naming the key."""
        if self.choices is not None:
            if value not in self.choices:
                allowed = ", ".join(str(c) for c in self.choices)
                raise ValueError(f"{self.key} must be one of {allowed}; got {value!r}")
        elif self.valid is not None and not self.valid(value):
            raise ValueError(f"{self.key} must be {self.expected}; got {value!r}")


GATING = ("exclusive_gating", "shortcut_gating")

OPTIONS: tuple[Option, ...] = (
    Option("shortcut", "A", "A (zero-padding), B (projections where the shape changes), C (all)",
           choices=("A", "B", "C"), residual_only=True, hash_default=False, column=False),
    Option("block", "post", "post (the 2015 unit) or preact (full pre-activation, 2016)",
           choices=("post", "preact")),
    Option("unit", "basic", "basic (two 3x3 convs, depth 6n+2) or bottleneck (1x1-3x3-1x1, 9n+2)",
           choices=("basic", "bottleneck")),
    Option("shortcut_variant", "identity", "the 2016 paper's Table 1, on shape-keeping blocks",
           choices=("identity", "scaling", *GATING, "conv1x1", "dropout"), residual_only=True),
    Option("shortcut_scale", paper.SHORTCUT_SCALE, "scaling: lambda on the shortcut",
           valid=lambda v: _number(v) and 0 <= v <= 1, expected="a number in [0, 1]",
           residual_only=True, variant_of=("scaling",), name=lambda v: f"{v:g}"),
    Option("scale_branch", True, "scaling: 1 - lambda on the branch too",
           valid=lambda v: isinstance(v, bool), expected="true or false", residual_only=True,
           variant_of=("scaling",), name=lambda v: "-shortcutonly"),
    Option("gate_bias", paper.GATE_BIAS, "gating: the gate's bias at initialisation",
           valid=_number, expected="a number", residual_only=True, variant_of=GATING,
           name=lambda v: f"-bias{v:g}"),
    Option("shortcut_dropout", paper.SHORTCUT_DROPOUT, "dropout: the drop probability",
           valid=lambda v: _number(v) and 0 <= v < 1, expected="a probability in [0, 1)",
           residual_only=True, variant_of=("dropout",), name=lambda v: f"{v:g}"),
    Option("norm", "batch", "batch (BN after every conv, the paper) or none (convs with a bias)",
           choices=("batch", "none"), column=False,
           name=lambda v: "-nonorm" if v == "none" else f"-{v}norm"),
    Option("init", "default", "default (He), zero_last_bn, fixup or skipinit (residual nets)",
           choices=("default", "zero_last_bn", "fixup", "skipinit")),
)  # fmt: skip
# DenseNet-BC's options (``model=densenet``), named and tabled the same way.
DENSE_OPTIONS: tuple[Option, ...] = (
    Option("growth_rate", paper.DENSE_GROWTH_RATE, "k: channels each dense layer adds",
           valid=lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
           expected="a positive integer", name=lambda v: f"-k{v}", hash_default=False),
    Option("compression", paper.DENSE_COMPRESSION, "the transitions' channel factor",
           valid=lambda v: _number(v) and 0 < v <= 1, expected="a number in (0, 1]",
           name=lambda v: f"-c{v:g}", hash_default=False),
)  # fmt: skip
BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}
# The choices of each option with a fixed set (the vocabulary of the configs and the CLI).
CHOICES: dict[str, tuple[Any, ...]] = {o.key: o.choices for o in OPTIONS if o.choices}
DEFAULTS: dict[str, Any] = {o.key: o.default for o in OPTIONS}
# The options of a shape-keeping shortcut's variant, by variant: {"scaling": {...}, ...}.
VARIANT_SETTINGS: dict[str, dict[str, Any]] = {}
for _o in OPTIONS:
    for _variant in _o.variant_of:
        VARIANT_SETTINGS.setdefault(_variant, {})[_o.key] = _o.default
SETTING_KEYS = tuple(o.key for o in OPTIONS if o.variant_of)
# Keys of the model configuration left out of a run's hash while they hold their default.
HASH_DEFAULTS: dict[str, Any] = {f"model.{o.key}": o.default for o in OPTIONS if o.hash_default}

Design = dataclasses.make_dataclass(
    "Design",
    [(o.key, type(o.default), dataclasses.field(default=o.default)) for o in OPTIONS],
    frozen=True,
    namespace={
        "__doc__": "How the units of a CIFAR net are built (:data:`OPTIONS`); the defaults are "
        "the 2015 net.",
        "layers": property(lambda self: layers_per_unit(self.unit)),
        "is_2015_block": property(
            lambda self: (
                self.block == "post"
                and self.unit == "basic"
                and self.shortcut_variant == "identity"
                and self.init in ("default", "zero_last_bn")
            )
        ),
    },
)


# The 2015 design: the defaults of the design columns that are not a variant's settings
# (block, unit, shortcut_variant, init); runs made before an option existed have its default.
PAPER_2015: dict[str, Any] = {o.key: o.default for o in OPTIONS if o.column and not o.variant_of}
# The run table's design columns, in order (the CIFAR family's, then DenseNet's).
COLUMNS = tuple(o.key for o in (*OPTIONS, *DENSE_OPTIONS) if o.column)


def dense_name_parts(model: Mapping[str, Any]) -> str:
    """The run-name parts of a DenseNet's options that differ from the defaults: ``-k24``."""
    parts = [(o, model.get(o.key, o.default)) for o in DENSE_OPTIONS]
    return "".join(o.name(v) for o, v in parts if v != o.default and o.name is not None)


def dense_fields(model: Mapping[str, Any], dense: bool) -> dict[str, Any]:
    """The run table's DenseNet columns (None for other nets)."""
    return {o.key: model.get(o.key, o.default) if dense else None for o in DENSE_OPTIONS}


def check_cifar_config(model: Mapping[str, Any]) -> None:
    """The checks of the CIFAR builder on a model configuration, without building the net."""
    check_design(bool(model.get("residual", False)), design_of(model))


def design_of(model: Mapping[str, Any]) -> Any:
    """The :class:`Design` of a model configuration (its design keys; defaults for the rest)."""
    return Design(**{k: model[k] for k in BY_KEY if k in model})


def schema_fields(residual: bool) -> list[tuple[str, type, Any]]:
    """The fields of ``model=plain`` (``residual=False``) or ``model=resnet``'s schema that the
    design options make, for :func:`dataclasses.make_dataclass`."""
    return [
        (o.key, type(o.default), dataclasses.field(default=o.default))
        for o in OPTIONS
        if residual or not o.residual_only
    ]


def name_parts(model: Mapping[str, Any], residual: bool) -> str:
    """The run-name parts of a CIFAR model's design options that differ from the defaults, in
    table order, a variant's settings joined to it: ``-B-preact-scaling0.3-shortcutonly``."""
    variant = model.get("shortcut_variant", "identity")
    text = ""
    for o in OPTIONS:
        value = model.get(o.key, o.default)
        if value == o.default or o.name is None or (o.residual_only and not residual):
            continue
        if o.variant_of and variant not in o.variant_of:
            continue
        text += o.name(value)
    return text


def design_fields(model: Mapping[str, Any], residual: bool, cifar: bool) -> dict[str, Any]:
    """The run table's design columns of a model configuration: each column option's value
    (None where the net has no such option: not the CIFAR family, a plain net's shortcut
    variant, a setting of another variant)."""
    fields: dict[str, Any] = {}
    variant = model.get("shortcut_variant", "identity") if cifar else None
    if not residual and variant == "identity":
        variant = None  # a plain net has no shortcut
    for o in OPTIONS:
        if not o.column:
            continue
        if o.variant_of:
            fields[o.key] = model.get(o.key, o.default) if variant in o.variant_of else None
        elif o.key == "shortcut_variant":
            fields[o.key] = variant
        else:
            fields[o.key] = model.get(o.key, o.default) if cifar else None
    return fields


# ------------------------------------------------------------------------------------------
# Depths
# ------------------------------------------------------------------------------------------


def layers_per_unit(unit: str) -> int:
    """Weighted layers per unit: 2 (basic) or 3 (bottleneck)."""
    BY_KEY["unit"].check(unit)
    return 2 if unit == "basic" else 3


def valid_depths(limit: int = 1202, unit: str = "basic") -> list[int]:
    """Depths 6n+2 (``unit=basic``) or 9n+2 (``unit=bottleneck``), n >= 1, up to ``limit``."""
    step = 3 * layers_per_unit(unit)
    return list(range(step + 2, limit + 1, step))


_DEPTHS_TEXT = {
    "basic": "6n+2 with n >= 1 (8, 14, 20, 26, 32, 38, 44, 50, 56, ..., 110, ..., 1202)",
    "bottleneck": "9n+2 with n >= 1 (11, 20, 29, 38, 47, 56, ..., 164, ..., 1001)",
}


def check_depth(depth: int, unit: str = "basic") -> int:
    """Return the number of blocks per stage n for a depth 6n+2 (basic units) or 9n+2
    (bottleneck units), or raise a ValueError naming the valid depths of each unit."""
    step = 3 * layers_per_unit(unit)
    valid = isinstance(depth, int) and not isinstance(depth, bool) and depth >= step + 2
    if not valid or (depth - 2) % step:
        other = "bottleneck" if unit == "basic" else "basic"
        raise ValueError(
            f"depth must be {_DEPTHS_TEXT[unit]}; got {depth!r} (that is for unit={unit}; "
            f"with unit={other} it is {_DEPTHS_TEXT[other]})"
        )
    return (depth - 2) // step


def check_dense_depth(depth: int) -> int:
    """Layers per dense block, (L - 4) / 6, for a DenseNet-BC of depth L; else a ValueError."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            "depth must be 6n+4 with n >= 1 for DenseNet-BC (10, 16, 22, 28, 34, 40, 46, ..., "
            f"100, ..., 190, 250); got {depth!r}"
        )
    return (depth - 4) // 6


def check_imagenet_depth(depth: int) -> tuple[str, tuple[int, ...]]:
    """Block type and blocks per stage for depth 18, 34, 50, 101 or 152, or a ValueError."""
    if isinstance(depth, bool) or depth not in paper.IMAGENET_DEPTHS:
        depths = ", ".join(str(d) for d in paper.IMAGENET_DEPTHS)
        raise ValueError(f"depth must be one of {depths}; got {depth!r}")
    return paper.IMAGENET_DEPTHS[depth]


# ------------------------------------------------------------------------------------------
# Combinations
# ------------------------------------------------------------------------------------------


def check_design(residual: bool, design: Any) -> None:
    """Refuse unknown options and combinations that do not make sense, with a ValueError that
    says what to set instead."""
    for o in OPTIONS:
        o.check(getattr(design, o.key))
    variant, init, norm = design.shortcut_variant, design.init, design.norm
    if variant != "identity":
        if not residual:
            raise ValueError(
                f"shortcut_variant={variant} changes the shortcuts, and a plain net "
                "(residual=false) has none; use a residual net (model=resnet) or "
                "shortcut_variant=identity"
            )
        if design.shortcut == "C":
            raise ValueError(
                f"shortcut_variant={variant} replaces the identity shortcuts of shape-keeping "
                "blocks, and shortcut=C has none (a projection on every shortcut); use "
                "shortcut=A or B"
            )
    if init == "default":
        return
    if not residual:
        raise ValueError(
            f"init={init} starts each residual branch at zero, and a plain net (residual=false) "
            "has no residual branches (its blocks would output zero); use init=default or a "
            "residual net (model=resnet)"
        )
    if init == "zero_last_bn" and norm != "batch":
        raise ValueError(
            "init=zero_last_bn zeroes the last BN of each residual branch, and norm=none has no "
            "BN; without normalization use init=fixup or init=skipinit"
        )
    if init == "zero_last_bn" and design.block == "preact":
        raise ValueError(
            "init=zero_last_bn zeroes the last BN of each residual branch, and in a "
            "pre-activation unit that BN comes before the last conv: the branch would output "
            "zero and never receive a gradient; use block=post or init=default"
        )
    if init in ("fixup", "skipinit") and norm != "none":
        raise ValueError(
            f"init={init} is defined for residual nets without normalization: set norm=none "
            f"(got norm={norm}); with BN, init=zero_last_bn is the corresponding choice"
        )


def check_model(model: Mapping[str, Any]) -> None:
    """The checks a model configuration's builder makes, without building it (torch-free):
    the CIFAR family's design and depth, DenseNet's and the ImageNet family's depth."""
    target = str(model.get("_target_", ""))
    builder = target.rsplit(".", 1)[-1]
    if builder == "cifar_net":
        try:
            check_cifar_config(model)
        except (TypeError, ValueError) as err:
            raise ValueError(f"model: {err}") from None
        depth_rule: Callable[[Any], Any] = lambda d: check_depth(d, model.get("unit", "basic"))  # noqa: E731
    elif builder == "densenet":
        depth_rule = check_dense_depth
    elif builder == "imagenet_net":
        depth_rule = check_imagenet_depth
    else:
        return
    try:
        depth_rule(model.get("depth"))
    except ValueError as err:
        raise ValueError(f"model.depth: {err}") from None
