"""Trained nets of a sweep, rebuilt for probes (lesions, landscapes)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from degradation.analysis.select import comparable
from degradation.checkpoints import BadFile, net_weights, report_skip, save_atomic
from degradation.data import DataUnavailableError
from degradation.models import CifarNet
from degradation.results import collect
from degradation.rundirs import CHECKPOINT_DIR, CONFIG_FILE, FINAL_CHECKPOINT

WEIGHTS_FILE = "weights.pt"


def export_weights(run_dir: str | Path, checkpoint: str = FINAL_CHECKPOINT) -> Path:
    """Write the net's final weights alone (fp32 state dict) to ``RUN_DIR/weights.pt``: what a
    shipped run keeps so that probes can rebuild it without its checkpoints."""
    run_dir = Path(run_dir)
    weights = net_weights(run_dir / CHECKPOINT_DIR / checkpoint)
    return save_atomic(weights, run_dir / WEIGHTS_FILE)


def check_targets(node: object, prefix: str, where: str = "") -> None:
    """Refuse a shared config whose ``_target_`` (at any depth) would call anything but this
    project's ``prefix`` builders: instantiating it would run what it names."""
    if isinstance(node, DictConfig | dict):
        for key, value in node.items():
            if key == "_target_" and not (isinstance(value, str) and value.startswith(prefix)):
                raise BadFile(
                    where or CONFIG_FILE,
                    f"refused: it names {value!r} to build (only {prefix}* is built from a "
                    "shared run)",
                    unsafe=True,
                )
            check_targets(value, prefix, where)
    elif isinstance(node, ListConfig | list):
        for value in node:
            check_targets(value, prefix, where)


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


def load_run(run_dir: str | Path, checkpoint: str = FINAL_CHECKPOINT):
    """Rebuild a run's net and data module from its config, with the checkpoint's weights (or,
    without checkpoints, the exported ``weights.pt``), read as weights only: a file that holds
    anything else, or is damaged, raises :class:`~degradation.checkpoints.BadFile`."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_DIR / checkpoint
    exported = run_dir / WEIGHTS_FILE
    if not path.is_file() and not exported.is_file():
        raise FileNotFoundError(f"{run_dir.name}: no checkpoints/{checkpoint}, no {WEIGHTS_FILE}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{run_dir.name}: no resolved {CONFIG_FILE} to rebuild it from")
    state = net_weights(path if path.is_file() else exported)
    config = run_dir / CONFIG_FILE
    try:
        cfg = OmegaConf.load(config)
        data, model = cfg.data, cfg.model
        check_targets(data, "degradation.data.", str(config))
        check_targets(model, "degradation.models.", str(config))
    except BadFile:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged YAML file fails in many ways
        raise BadFile(config, f"unreadable ({type(err).__name__}: {first_line(err)})") from None
    datamodule = instantiate(data)
    net = instantiate(model, in_channels=datamodule.in_channels, num_classes=datamodule.num_classes)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:  # weights of another net
        first = (str(err).strip().splitlines() or ["mismatch"])[0][:160]
        raise BadFile(
            path if path.is_file() else exported, f"not this run's net ({first})"
        ) from None
    return net, datamodule


def trained_nets(
    dirs: Sequence[Path], depths: Sequence[int] | None = None, export: bool = False
) -> tuple[dict[str, CifarNet], object]:
    """Every finished 6n+2 run with BN under ``dirs`` (of ``depths`` if given), named
    ``<family>-<depth> seed <seed>``, with the data module of the first; runs without weights
    are skipped with a line on stderr. ``export`` writes each run's ``weights.pt`` first."""
    runs, _ = collect(*dirs)
    runs = comparable(runs)  # the paper's design: BN nets of the 2015 unit
    if depths:
        runs = runs[runs["depth"].isin(depths)]
    nets, datamodule = {}, None
    for _, run in runs.iterrows():
        try:
            if export and (Path(run["path"]) / CHECKPOINT_DIR / FINAL_CHECKPOINT).is_file():
                export_weights(run["path"])  # where weights.pt alone was shipped, it stays
            net, dm = load_run(run["path"])
        except BadFile as err:
            report_skip(run["run"], err)
            continue
        except (FileNotFoundError, DataUnavailableError) as err:
            print(f"skipping {run['run']}: {err}", file=sys.stderr)
            continue
        except Exception as err:  # noqa: BLE001 - one run's damage must not stop the others
            print(
                f"skipping {run['run']}: {type(err).__name__}: {first_line(err)}", file=sys.stderr
            )
            continue
        if not isinstance(net, CifarNet):
            print(f"skipping {run['run']}: not a 6n+2 net", file=sys.stderr)
            continue
        datamodule = datamodule or dm
        name = f"{run['family']}-{run['depth']} seed {run['seed']}"
        nets[run["run"] if name in nets else name] = net  # a second such net: its run's name
    if datamodule is not None:
        datamodule.setup("fit")
    return nets, datamodule
