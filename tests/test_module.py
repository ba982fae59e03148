"""The training recipe: learning-rate schedule, error metric, optimizer wiring."""

import functools

import pytest
import torch

from degradation.models import cifar_net
from degradation.module import DegradationModule, error_rate, paper_schedule


def lrs(steps, **kwargs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = paper_schedule(opt, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_paper_schedule_divides_by_ten_at_milestones():
    lr = lrs(60, milestones=[20, 40])
    assert lr[0] == pytest.approx(0.1) and lr[19] == pytest.approx(0.1)
    assert lr[20] == pytest.approx(0.01) and lr[39] == pytest.approx(0.01)
    assert lr[40] == pytest.approx(0.001) and lr[59] == pytest.approx(0.001)


def test_warmup_is_not_undone_by_the_decay_schedule():
    lr = lrs(60, milestones=[20, 40], warmup_steps=5)
    assert lr[:5] == pytest.approx([0.01] * 5)
    assert lr[5] == pytest.approx(0.1) and lr[19] == pytest.approx(0.1)
    assert lr[20] == pytest.approx(0.01) and lr[40] == pytest.approx(0.001)


def test_schedule_refuses_nonsense():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="milestones"):
        paper_schedule(opt, milestones=[0, 10])
    with pytest.raises(ValueError, match="warmup_steps"):
        paper_schedule(opt, warmup_steps=-1)


def test_error_rate():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    assert error_rate(logits, torch.tensor([0, 1, 1, 0])).item() == pytest.approx(0.5)


def test_configure_optimizers_uses_the_recipe():
    module = DegradationModule(
        cifar_net(8, True),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4),
        scheduler=functools.partial(paper_schedule, milestones=[32000, 48000]),
    )
    config = module.configure_optimizers()
    opt = config["optimizer"]
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 1e-4
    assert config["lr_scheduler"]["interval"] == "step"


def test_channels_last_computes_the_same_function_and_keeps_checkpoint_names():
    torch.manual_seed(0)
    plain = DegradationModule(cifar_net(8, residual=True, width=8), torch.optim.SGD).eval()
    fast = DegradationModule(cifar_net(8, residual=True, width=8), torch.optim.SGD,
                             channels_last=True).eval()  # fmt: skip
    fast.load_state_dict(plain.state_dict())
    assert set(fast.state_dict()) == set(plain.state_dict())
    assert all(k.startswith("net.") for k in fast.state_dict())
    conv = next(m for m in fast.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("amx, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_on_cpu_uses_bf16_only_with_amx(monkeypatch, amx, expected):
    from degradation.speed import PRECISION_ENV, auto_precision

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert auto_precision("auto") == expected
    assert auto_precision("cpu") == expected


def test_evaluation_time_is_counted_and_carried_across_a_resume():
    module = DegradationModule(cifar_net(8, False), optimizer=torch.optim.SGD)
    module.on_validation_epoch_start()
    module.on_validation_epoch_end()
    assert module.eval_time() > 0
    checkpoint: dict = {}
    module._eval_seconds = 2.5
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["eval_time_s"] == 2.5
    resumed = DegradationModule(cifar_net(8, False), optimizer=torch.optim.SGD)
    resumed.on_load_checkpoint(checkpoint)
    resumed._eval_seconds = 1.0  # evaluations after the resume add to the earlier attempts'
    assert resumed.eval_time() == 3.5
