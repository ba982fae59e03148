"""experiments/train.py as a real subprocess, and the configs it composes."""

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import ROOT, TINY, run_train
from degradation.config import register as register_resolvers


def test_training_run_leaves_metrics_and_summary_and_learns(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        *TINY, "trainer.max_steps=60", "eval_every=25", "seed=3", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    for column in ("step", "train_error", "train_loss", "test_error", "lr"):
        assert column in metrics.columns
    assert metrics["step"].is_unique and metrics["step"].is_monotonic_increasing
    train = metrics.dropna(subset=["train_error"])
    assert train["step"].tolist() == list(range(60))
    evals = metrics.dropna(subset=["test_error"])
    assert evals["step"].tolist() == [25, 50, 60]
    assert train["train_error"].head(10).mean() > train["train_error"].tail(10).mean() + 0.2
    assert train["lr"].tolist() == pytest.approx([0.1] * 60)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 60
    assert summary["model"] == "plain-8" and summary["family"] == "plain"
    assert summary["data"] == "synthetic" and summary["seed"] == 3
    assert summary["final_test_error"] == pytest.approx(evals["test_error"].iloc[-1])
    assert summary["final_train_error"] < 0.5 and summary["wall_time_s"] > 0
    # the three evaluations' time is recorded, and is a part of the training time
    assert 0 < summary["eval_time_s"] < summary["wall_time_s"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "final.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    resolved = (run_dir / "config.yaml").read_text()
    assert "${" not in resolved and f"dirpath: {run_dir}/checkpoints" in resolved


def test_residual_run_and_default_run_dir_name(tmp_path):
    result = run_train(
        *TINY,
        "model=resnet",
        "model.shortcut=B",
        "trainer.max_steps=5",
        "eval_every=5",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("resnet8-B-w8-synthetic-seed0-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["family"] == "resnet" and summary["shortcut"] == "B"


def test_multirun_sweep_puts_each_run_in_its_own_dir(tmp_path):
    result = run_train(
        "-m",
        *TINY,
        "model=plain,resnet",
        "trainer.max_steps=3",
        "eval_every=3",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.parent.name.rsplit("-", 1)[0] for p in tmp_path.glob("*/summary.json"))
    assert names == ["plain8-w8-synthetic-seed0", "resnet8-w8-synthetic-seed0"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.depth=21", "depth must be 6n+2"),
        ("trainer.max_steps=0", "trainer.max_steps must be a positive"),
        ("trainer.max_steps=-3", "trainer.max_steps must be a positive"),
        ("eval_every=-5", "eval_every must be a positive"),
    ],
)
def test_bad_values_fail_with_one_clear_message(tmp_path, override, message):
    result = run_train(*TINY, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("override", ["model=nonsense", "data=imagenet42", "experiment=nope"])
def test_unknown_names_list_the_available_ones(tmp_path, override):
    result = run_train(*TINY[1:], override, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Could not find" in lines[0] and "available options" in lines[0]
    assert "_schema" not in lines[0]  # the typed schemas are not options to pick
    assert not (tmp_path / "run").exists()


def test_missing_data_fails_with_where_it_looked(tmp_path):
    result = run_train(
        "data=fashion_mnist",
        "data.search_dirs=[]",
        "data.download=false",
        f"data_dir={tmp_path / 'nodata'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2
    assert "Fashion-MNIST not found" in result.stderr and str(tmp_path / "nodata") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("data", ["synthetic", "fashion_mnist", "cifar10"])
@pytest.mark.parametrize("model", ["plain", "resnet"])
def test_every_config_group_composes_and_instantiates(tmp_path, data, model):
    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"data={data}", f"model={model}", f"data_dir={tmp_path}"],
            return_hydra_config=True,
        )
    assert cfg.trainer.max_steps == 64000 and cfg.data.batch_size == 128
    assert list(cfg.scheduler.milestones) == [32000, 48000]
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.weight_decay == 1e-4
    net = instantiate(cfg.model, in_channels=1, num_classes=10)
    assert net.residual == (model == "resnet")
    dm = instantiate(cfg.data)
    assert dm.batch_size == 128 and Path(dm.data_dir if data != "synthetic" else tmp_path)


def compose_train(*overrides: str):
    register_resolvers()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("depth,warmup", [(56, 0), (110, 400)])
def test_fig6_preset_is_the_papers_sweep(depth, warmup):
    cfg = compose_train("experiment=fig6_cifar10", "model=resnet", f"model.depth={depth}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params["model.depth"] == "20,32,44,56,110"
    assert cfg.hydra.sweeper.params.model == "plain,resnet"
    assert cfg.data._target_.endswith("CIFAR10DataModule") and cfg.model.shortcut == "A"
    assert cfg.trainer.max_steps == 64000 and list(cfg.scheduler.milestones) == [32000, 48000]
    assert cfg.scheduler.warmup_steps == warmup


def test_fig1_and_quick_presets():
    fig1 = compose_train("experiment=fig1_cifar10")
    assert fig1.hydra.sweeper.params["model.depth"] == "20,56" and not fig1.model.residual
    quick = compose_train("experiment=quick")
    assert quick.data._target_.endswith("FashionMNISTDataModule")
    assert quick.hydra.launcher.n_jobs == 2 and quick.threads == 1
    assert quick.hydra.sweeper.params.model == "plain,resnet"
    assert quick.model.width == 8 and quick.trainer.max_steps == 600


def test_evaluation_does_not_change_training(tmp_path):
    """Evaluating more or less often must leave the training trajectory untouched."""
    losses = []
    for every in (7, 10):
        run_dir = tmp_path / f"every{every}"
        result = run_train(
            *TINY,
            "trainer.max_steps=25",
            f"eval_every={every}",
            "threads=1",
            f"hydra.run.dir={run_dir}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train_loss"])
        losses.append(metrics["train_loss"].tolist())
    assert losses[0] == losses[1]


def test_shortcut_presets_and_model_options():
    assert compose_train("model=resnet_b").model.shortcut == "B"
    assert compose_train("model=resnet_c").model.shortcut == "C"
    quick = compose_train("experiment=shortcuts_quick")
    assert quick.hydra.sweeper.params.model == "resnet_c,resnet_b,resnet,plain"
    assert quick.model.depth == 20 and quick.threads == 1
    full = compose_train("experiment=shortcuts_cifar10")
    assert full.data._target_.endswith("CIFAR10DataModule") and full.model.depth == 32


def test_corrupt_data_files_fail_with_a_clear_message(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        (data / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)  # header cut short
    result = run_train(
        "data=fashion_mnist", "data.search_dirs=[]", "data.download=false", f"data_dir={data}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 2
    assert "truncated" in result.stderr or "corrupt" in result.stderr
    assert "Traceback" not in result.stderr
    summary = tmp_path / "run" / "summary.json"
    assert not summary.exists() or json.loads(summary.read_text())["status"] != "finished"


def test_tensorboard_logger_writes_events_that_tensorboard_reads(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_train(*TINY, "trainer.max_steps=4", "eval_every=2", "logger=tensorboard",
                       f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train_loss", "train_error", "lr", "test_error"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train_loss")] == [0, 1, 2, 3]
    csv = pd.read_csv(tmp_path / "metrics.csv")  # the analysis's file is written as before
    losses = [e.value for e in events.Scalars("train_loss")]
    assert losses == pytest.approx(csv["train_loss"].dropna().tolist(), rel=1e-6)
