"""The designs that followed the 2015 paper: pre-activation and bottleneck units (He et al. 2016),
the shortcut variants of its Table 1, zero-init / Fixup / SkipInit, and DenseNet-BC."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import ROOT
from degradation.designs import CHOICES, check_cifar_config
from degradation.models import (
    DenseNet,
    Design,
    Gate,
    Unit,
    ZeroPadShortcut,
    check_dense_depth,
    check_depth,
    cifar_net,
    count_parameters,
    densenet,
    make_shortcut,
    valid_depths,
)
from degradation.paper import TABLE1_2016
from degradation.rundirs import config_hash, model_fields, run_name

SHORTCUT_VARIANTS = CHOICES["shortcut_variant"]

# Paper figures: He et al. 2016 (pre-activation ResNet-164 and -1001 on CIFAR-10, 10 classes) and
# Huang et al. 2017 (DenseNet-BC, Table 2), in millions of parameters.
PAPER_PREACT_PARAMS = {164: 1.7, 1001: 10.2}
PAPER_DENSE_PARAMS = {(100, 12): 0.8, (250, 24): 15.3, (190, 40): 25.6}


def relative_gap(measured: int, paper_millions: float) -> float:
    return abs(measured / 1e6 - paper_millions) / paper_millions


# --------------------------------------------------------------------------------------------
# Parameter counts and depths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", sorted(PAPER_PREACT_PARAMS))
def test_preact_bottleneck_parameter_counts_match_the_paper(depth):
    # Projection shortcuts where the shape changes (option B), as in the paper's code.
    net = cifar_net(depth, True, "B", block="preact", unit="bottleneck")
    assert relative_gap(count_parameters(net), PAPER_PREACT_PARAMS[depth]) < 0.02
    # Post-activation twin: the same layers, the same count.
    post = cifar_net(depth, True, "B", unit="bottleneck")
    assert count_parameters(post) == count_parameters(net)


def test_bottleneck_layout():
    net = cifar_net(164, True, "B", block="preact", unit="bottleneck")
    units = [m for m in net.modules() if isinstance(m, Unit)]
    assert len(units) == 54  # 3 stages x 18
    weighted = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    projections = [u.shortcut for u in units if isinstance(u.shortcut, nn.Sequential)]
    assert len(weighted) - len(projections) == 164  # 9n+2 layers plus the 3 projections
    first = net.stages[0][0]
    assert (first.conv1.kernel_size, first.conv2.kernel_size, first.conv3.kernel_size) == (
        (1, 1), (3, 3), (1, 1),
    )  # fmt: skip
    assert [stage[-1].conv3.out_channels for stage in net.stages] == [64, 128, 256]
    assert [stage[-1].conv2.out_channels for stage in net.stages] == [16, 32, 64]
    assert net.fc.in_features == 256


@pytest.mark.parametrize(("depth", "growth"), sorted(PAPER_DENSE_PARAMS))
def test_densenet_bc_parameter_counts_match_the_paper(depth, growth):
    net = densenet(depth, growth)
    assert relative_gap(count_parameters(net), PAPER_DENSE_PARAMS[depth, growth]) < 0.05
    if (depth, growth) == (100, 12):
        assert count_parameters(net) == 769_162  # 0.77M, "0.8M" in the paper


def test_bottleneck_depths_are_9n_plus_2_and_errors_name_both_units():
    assert check_depth(164, "bottleneck") == 18 and check_depth(1001, "bottleneck") == 111
    assert valid_depths(60, "bottleneck") == [11, 20, 29, 38, 47, 56]
    with pytest.raises(ValueError, match=r"9n\+2.*164.*1001.*unit=bottleneck.*6n\+2"):
        cifar_net(1000, True, unit="bottleneck")
    with pytest.raises(ValueError, match=r"6n\+2.*unit=basic.*9n\+2.*164, \.\.\., 1001"):
        cifar_net(1001, True)  # 1001 is a bottleneck depth only
    with pytest.raises(ValueError, match="unit must be one of basic, bottleneck"):
        cifar_net(20, True, unit="wide")


def test_densenet_depths():
    assert check_dense_depth(100) == 16 and check_dense_depth(40) == 6
    for bad in (8, 20, 101, 0, True, 100.0):
        with pytest.raises(ValueError, match=r"6n\+4.*10, 16, 22.*100"):
            densenet(bad)


def test_1001_layer_preact_net_runs_a_forward_on_the_cpu():
    torch.manual_seed(0)
    net = cifar_net(1001, True, "B", block="preact", unit="bottleneck")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 0.4 s; two threads on a busy 2-core CPU took 30 s
    try:
        out = net(torch.randn(2, 3, 32, 32))  # training mode: BN uses the batch statistics
    finally:
        torch.set_num_threads(threads)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------------
# Shortcut variants, checked by hand on one shape-keeping unit
# --------------------------------------------------------------------------------------------


def unit(variant: str, block: str = "preact", **settings) -> Unit:
    torch.manual_seed(0)
    return Unit(8, 8, 1, True, Design(block=block, shortcut_variant=variant, **settings))


def branch_of(u: Unit, x: torch.Tensor) -> torch.Tensor:
    return u.branch(x)[0]


X = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(1))


def test_constant_scaling_halves_the_shortcut():
    u = unit("scaling", scale_branch=False)
    torch.testing.assert_close(u(X), branch_of(u, X) + 0.5 * X)
    nn.init.zeros_(u.conv2.weight)  # no branch: what is left is the shortcut, halved
    torch.testing.assert_close(u(X), 0.5 * X)
    both = unit("scaling")  # the paper's "0.5 on both": (1 - 0.5) on the branch too
    torch.testing.assert_close(both(X), 0.5 * branch_of(both, X) + 0.5 * X)
    post = unit("scaling", block="post", scale_branch=False)
    nn.init.zeros_(post.bn2.weight)
    torch.testing.assert_close(post(X.relu()), 0.5 * X.relu())  # ReLU after the addition


@pytest.mark.parametrize("block", ["post", "preact"])
def test_exclusive_gate_with_a_large_negative_bias_passes_the_shortcut_through(block):
    u = unit("exclusive_gating", block=block, gate_bias=-100.0)
    x = X.relu() if block == "post" else X  # a post unit's input comes after a ReLU
    assert branch_of(u, x).abs().max() > 0.1  # the branch computes something ...
    torch.testing.assert_close(u(x), x)  # ... and the gate shuts it out: out == x
    open_ = unit("exclusive_gating", gate_bias=100.0)  # g = 1: the branch alone
    torch.testing.assert_close(open_(X), branch_of(open_, X))


def test_shortcut_only_gating():
    shut = unit("shortcut_gating", gate_bias=-100.0)  # 1 - g = 1: identity shortcut
    torch.testing.assert_close(shut(X), branch_of(shut, X) + X)
    open_ = unit("shortcut_gating", gate_bias=100.0)  # 1 - g = 0: no shortcut
    torch.testing.assert_close(open_(X), branch_of(open_, X))
    u = unit("shortcut_gating")  # by hand: F + (1 - sigmoid(W x + b)) x
    g = torch.sigmoid(F.conv2d(X, u.gate.conv.weight, u.gate.conv.bias))
    torch.testing.assert_close(u(X), branch_of(u, X) + (1 - g) * X)
    assert torch.all(u.gate.conv.bias == -6.0)  # the paper's initialization


def test_dropout_shortcut_is_the_identity_in_eval_mode():
    u, identity = unit("dropout"), unit("identity")
    identity.load_state_dict(u.state_dict())
    u.eval(), identity.eval()
    torch.testing.assert_close(u(X), identity(X))
    torch.testing.assert_close(u(X), branch_of(u, X) + X)
    u.train()
    torch.manual_seed(3)
    shortcut = u(X) - branch_of(u, X)  # dropout 0.5: each value 0 or doubled
    dropped = torch.isclose(shortcut, torch.zeros_like(X), atol=1e-5)
    kept = torch.isclose(shortcut, 2 * X, atol=1e-5)
    assert torch.all(dropped | kept) and 0.3 < dropped.float().mean() < 0.7


def test_conv1x1_shortcut():
    u = unit("conv1x1")
    assert isinstance(u.shortcut, nn.Conv2d) and u.shortcut.kernel_size == (1, 1)
    assert u.shortcut.bias is None  # no BN after it, unlike option C
    torch.testing.assert_close(u(X), branch_of(u, X) + u.shortcut(X))


@pytest.mark.parametrize("variant", SHORTCUT_VARIANTS)
def test_variants_replace_only_identity_shortcuts(variant):
    net = cifar_net(14, True, "A", width=4, shortcut_variant=variant)
    units = [m for m in net.modules() if isinstance(m, Unit)]
    changing = [u for u in units if u.conv1.stride != (1, 1)]
    assert len(changing) == 2 and all(isinstance(u.shortcut, ZeroPadShortcut) for u in changing)
    assert all(getattr(u, "gate", None) is None for u in changing)
    keeping = [u for u in units if u not in changing]
    gated = [u for u in keeping if getattr(u, "gate", None) is not None]
    assert len(gated) == (4 if variant.endswith("gating") else 0)
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


class Reference2015Block(nn.Module):
    """The 2015 block written out by hand (conv-BN-ReLU, conv-BN, + shortcut, ReLU), as the
    suite built it before one unit class served every design."""

    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool, option: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = make_shortcut(option, c_in, c_out, stride) if residual else None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out if self.shortcut is None else out + self.shortcut(x))


@pytest.mark.parametrize(
    ("residual", "option"), [(False, "A"), (True, "A"), (True, "B"), (True, "C")]
)
@pytest.mark.parametrize("init", ["default", "zero_last_bn"])
def test_the_default_unit_is_the_2015_block(residual, option, init):
    if init == "zero_last_bn" and not residual:
        pytest.skip("a plain net has no residual branch to zero")
    torch.manual_seed(0)
    net = cifar_net(14, residual, option, width=4, init=init).train()
    units = [m for m in net.modules() if isinstance(m, Unit)]
    assert len(units) == 6
    x = torch.randn(2, 3, 16, 16)
    h = net.stem(x)
    for unit in units:
        stride, c_in, c_out = unit.conv1.stride[0], unit.conv1.in_channels, unit.conv1.out_channels
        ref = Reference2015Block(c_in, c_out, stride, residual, option)
        assert list(ref.state_dict()) == list(unit.state_dict())
        ref.load_state_dict(unit.state_dict())
        ref.train()
        torch.testing.assert_close(unit(h), ref(h), rtol=0, atol=0)
        h = unit(h)


# --------------------------------------------------------------------------------------------
# Pre-activation
# --------------------------------------------------------------------------------------------


def test_preact_layout():
    net = cifar_net(8, True, block="preact")
    assert len(net.stem) == 1 and isinstance(net.stem[0], nn.Conv2d)  # a bare conv
    assert isinstance(net.final[0], nn.BatchNorm2d) and isinstance(net.final[1], nn.ReLU)
    u = net.stages[1][0]  # 8 -> 16 channels, stride 2: option A on the pre-activated input
    assert u.bn1.num_features == 16 and u.bn2.num_features == 32
    x = torch.randn(2, 16, 8, 8)
    pre = F.relu(u.bn1(x))
    expected = u.conv2(F.relu(u.bn2(u.conv1(pre)))) + u.shortcut(pre)
    torch.testing.assert_close(u(x), expected)  # nothing after the addition


@pytest.mark.parametrize("residual", [True, False])
def test_post_and_preact_start_at_the_same_loss_scale_and_train_a_step(residual):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    for block in ("post", "preact"):
        torch.manual_seed(0)
        net = cifar_net(8, residual, block=block)
        loss = F.cross_entropy(net(x), y)
        assert abs(loss.item() - math.log(10)) < 0.15, (block, loss.item())
        assert_one_step_trains(net, x, y)


def assert_one_step_trains(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    before = [p.detach().clone() for p in net.parameters()]
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True)]
    assert sum(changed) > 0.9 * len(changed)
    assert torch.isfinite(F.cross_entropy(net(x), y))


# --------------------------------------------------------------------------------------------
# Initializations and normalization-free nets
# --------------------------------------------------------------------------------------------

INIT_CASES = [
    ("zero_last_bn", "batch", "post", "basic"),
    ("zero_last_bn", "batch", "post", "bottleneck"),
    ("fixup", "none", "post", "basic"),
    ("fixup", "none", "post", "bottleneck"),
    ("fixup", "none", "preact", "basic"),
    ("skipinit", "none", "post", "basic"),
    ("skipinit", "none", "preact", "bottleneck"),
]


def keeps_shape(block: nn.Module) -> bool:
    if isinstance(block, Unit):
        return not block.changes_shape
    return block.conv1.stride == (1, 1) and block.conv1.in_channels == block.conv2.out_channels


@pytest.mark.parametrize(("init", "norm", "block", "unit_"), INIT_CASES)
def test_zero_started_branches_make_shape_keeping_blocks_identities(init, norm, block, unit_):
    depth = 20 if unit_ == "basic" else 29
    torch.manual_seed(0)
    net = cifar_net(depth, True, "B", width=4, norm=norm, block=block, unit=unit_, init=init)
    seen = []

    def record(module, inputs, output):
        if keeps_shape(module):
            seen.append((inputs[0].detach().clone(), output.detach().clone()))

    blocks = [m for m in net.modules() if isinstance(m, Unit)]
    hooks = [b.register_forward_hook(record) for b in blocks]
    out = net(torch.randn(3, 3, 16, 16))
    for h in hooks:
        h.remove()
    # all but the first blocks of stages 2 and 3 (and of stage 1: 4 -> 16 channels, bottleneck)
    assert len(seen) == len(blocks) - (3 if unit_ == "bottleneck" else 2)
    for inputs, outputs in seen:
        torch.testing.assert_close(outputs, inputs)
    if init == "fixup":  # the classifier starts at zero: every class equally likely
        assert torch.all(out == 0)


def test_fixup_scales_the_branch_convs():
    torch.manual_seed(0)
    net = cifar_net(110, True, norm="none", init="fixup")  # 54 branches of 2 layers
    u = net.stages[2][5]  # 64 -> 64 channels, fan-in 576
    expected = (2 / 576) ** 0.5 * 54 ** (-1 / 2)
    assert abs(u.conv1.weight.std().item() - expected) / expected < 0.02
    assert torch.all(u.conv2.weight == 0)
    assert u.conv1.bias is None and u.conv2.bias is None  # scalar biases instead
    assert len(u.fixup_bias) == 4 and u.fixup_scale.item() == 1.0
    assert torch.all(net.fc.weight == 0) and torch.all(net.fc.bias == 0)
    bottleneck = cifar_net(29, True, norm="none", unit="bottleneck", init="fixup")
    b = bottleneck.stages[2][2]  # 9 branches of 3 layers: scaled by 9^(-1/4)
    fan_in = b.conv2.weight[0].numel()
    expected = (2 / fan_in) ** 0.5 * 9 ** (-1 / 4)
    assert abs(b.conv2.weight.std().item() - expected) / expected < 0.05


def test_skipinit_gain_starts_at_zero_and_learns():
    torch.manual_seed(0)
    net = cifar_net(8, True, norm="none", init="skipinit", width=4)
    gains = [u.skip_gain for u in net.modules() if isinstance(u, Unit)]
    assert len(gains) == 3 and all(g.item() == 0 for g in gains)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    F.cross_entropy(net(x), y).backward()
    assert all(g.grad is not None and float(g.grad.abs()) > 0 for g in gains)


NO_NORM_CASES = [
    (False, {"block": "preact"}),
    (False, {"unit": "bottleneck"}),
    (False, {"block": "preact", "unit": "bottleneck"}),
    (True, {"block": "preact"}),
    (True, {"unit": "bottleneck"}),
    (True, {"block": "preact", "unit": "bottleneck"}),
    *((True, {"shortcut_variant": v, "shortcut": "B"}) for v in SHORTCUT_VARIANTS),
    (True, {"init": "fixup"}),
    (True, {"init": "skipinit", "block": "preact"}),
]


@pytest.mark.parametrize(
    ("residual", "options"),
    NO_NORM_CASES,
    ids=[
        f"{'resnet' if r else 'plain'}-{'-'.join(map(str, o.values()))}" for r, o in NO_NORM_CASES
    ],
)
def test_norm_none_builds_without_batchnorm(residual, options):
    depth = 20 if options.get("unit") == "bottleneck" else 14
    net = cifar_net(depth, residual, width=4, norm="none", **options)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    if options.get("init") != "fixup":
        assert all(
            m.bias is not None
            for m in net.modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
        )
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_densenet_without_norm_has_no_batchnorm():
    net = densenet(22, 6, norm="none")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert torch.isfinite(net(torch.randn(2, 3, 28, 28))).all()


# --------------------------------------------------------------------------------------------
# Invalid combinations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": "fixup"}, r"init=fixup .* set norm=none .*zero_last_bn"),
        ({"init": "skipinit"}, r"init=skipinit .* set norm=none"),
        ({"init": "zero_last_bn", "norm": "none"}, r"no BN; .*fixup or init=skipinit"),
        ({"init": "fixup", "norm": "none", "residual": False}, r"plain net .*residual"),
        ({"init": "zero_last_bn", "residual": False}, r"plain net"),
        ({"shortcut_variant": "scaling", "residual": False}, r"plain net .* has none"),
        ({"shortcut_variant": "dropout", "shortcut": "C"}, r"shortcut=C has none.*A or B"),
        ({"block": "pre"}, r"block must be one of post, preact"),
        ({"shortcut_variant": "gating"}, r"shortcut_variant must be one of identity, scaling"),
        ({"init": "orthogonal"}, r"init must be one of default, zero_last_bn, fixup, skipinit"),
        ({"shortcut_variant": "scaling", "shortcut_scale": 2.0}, r"shortcut_scale .* \[0, 1\]"),
        ({"shortcut_variant": "dropout", "shortcut_dropout": 1.0}, r"shortcut_dropout"),
        ({"gate_bias": "low"}, r"gate_bias must be a number"),
    ],
)
def test_invalid_combinations_are_refused_with_what_to_do(kwargs, match):
    kwargs = {"residual": True, **kwargs}
    residual = kwargs.pop("residual")
    with pytest.raises(ValueError, match=match):
        cifar_net(20, residual, **kwargs)
    with pytest.raises(ValueError, match=match):  # the same check on a configuration
        check_cifar_config({"residual": residual, **kwargs})


def test_gate_module_by_hand():
    gate = Gate(2, bias=-6.0)
    with torch.no_grad():
        gate.conv.weight.zero_()
    assert torch.allclose(gate(torch.randn(1, 2, 3, 3)), torch.sigmoid(torch.tensor(-6.0)))


# --------------------------------------------------------------------------------------------
# DenseNet
# --------------------------------------------------------------------------------------------


def test_densenet_layout_and_a_training_step():
    torch.manual_seed(0)
    net = densenet(22, 6, in_channels=1, num_classes=7)
    assert isinstance(net, DenseNet) and net.family == "dense" and not net.residual
    assert net.stem.out_channels == 12  # 2k
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == 22  # depth counts the convs and the classifier
    assert [m.out_channels for m in convs if m.kernel_size == (3, 3)][1:] == [6] * 9
    layer = net.features[0].layers[1]  # BN-ReLU-1x1 (4k)-BN-ReLU-3x3 (k)
    assert layer.conv1.in_channels == 12 + 6 and layer.conv1.out_channels == 24
    # transitions halve the channels: 12 + 3*6 = 30 -> 15; 15 + 18 = 33 -> 16
    transitions = [m for m in net.features if not hasattr(m, "layers")]
    assert [t[2].out_channels for t in transitions] == [15, 16]
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 7, (8,))
    out = net(x)
    assert out.shape == (8, 7)
    assert abs(F.cross_entropy(out, y).item() - math.log(7)) < 0.3
    assert_one_step_trains(net, x, y)


# --------------------------------------------------------------------------------------------
# Run names, run-table fields and hashes
# --------------------------------------------------------------------------------------------


def test_run_names_show_the_new_options():
    model = {"depth": 164, "residual": True, "shortcut": "B", "width": 16, "norm": "batch",
             "block": "preact", "unit": "bottleneck", "shortcut_variant": "identity",
             "init": "default"}  # fmt: skip
    assert run_name(model, "cifar10", 0) == "resnet164-B-preact-bottleneck-cifar10-seed0"
    scaled = {"depth": 110, "residual": True, "shortcut_variant": "scaling", "scale_branch": False}
    assert run_name(scaled, "cifar10", 0) == "resnet110-scaling-shortcutonly-cifar10-seed0"
    gated = {"depth": 20, "residual": True, "shortcut_variant": "exclusive_gating",
             "gate_bias": 0.0, "width": 8}  # fmt: skip
    assert run_name(gated, "fmnist", 1) == "resnet20-exclusive_gating-bias0-w8-fmnist-seed1"
    fixup = {"depth": 20, "residual": True, "norm": "none", "init": "fixup", "width": 8}
    assert run_name(fixup, "fmnist", 0) == "resnet20-nonorm-fixup-w8-fmnist-seed0"
    dense = {"_target_": "degradation.models.densenet", "depth": 100, "growth_rate": 12}
    assert run_name(dense, "cifar10", 0) == "dense100-cifar10-seed0"
    assert run_name({**dense, "growth_rate": 6}, "cifar10", 0) == "dense100-k6-cifar10-seed0"


def test_model_fields():
    fields = model_fields({"depth": 20, "residual": True, "shortcut_variant": "exclusive_gating"})
    assert fields["family"] == "resnet" and fields["block"] == "post"
    assert fields["shortcut_variant"] == "exclusive_gating" and fields["gate_bias"] == -6.0
    assert fields["shortcut_scale"] is None and fields["growth_rate"] is None
    plain = model_fields({"depth": 20, "residual": False})
    assert plain["family"] == "plain" and plain["shortcut_variant"] is None
    dense = model_fields({"_target_": "degradation.models.densenet", "depth": 40})
    assert dense["family"] == "dense" and dense["growth_rate"] == 12 and dense["block"] is None


def hydra_config(*overrides: str):
    from hydra import compose, initialize_config_dir

    from degradation.config import register

    register()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    "overrides",
    [("model.depth=20",), ("model=resnet", "model.depth=44"), ("model=resnet", "model.depth=8")],
)
def test_shipped_run_directories_keep_their_names(overrides):
    """The new keys at their defaults leave the hash (and so the run directory) unchanged."""
    cfg = hydra_config("experiment=quick", *overrides)
    name = f"{run_name(cfg.model, 'fashion_mnist', cfg.seed)}-{config_hash(cfg)}"
    assert (ROOT / "results" / "quick" / name).is_dir(), name


@pytest.mark.parametrize(
    "override",
    ["model.block=preact", "model.unit=bottleneck", "model.shortcut_variant=scaling",
     "model.gate_bias=0", "model.scale_branch=false", "model.init=zero_last_bn"],
)  # fmt: skip
def test_new_keys_change_the_hash_when_set(override):
    base = config_hash(hydra_config("model=resnet"))
    assert config_hash(hydra_config("model=resnet", override)) != base


def test_densenet_config_composes_and_builds():
    from hydra.utils import instantiate

    cfg = hydra_config("model=densenet", "model.depth=22", "model.growth_rate=4")
    net = instantiate(cfg.model, in_channels=1, num_classes=10)
    assert isinstance(net, DenseNet) and net.depth == 22 and net.growth_rate == 4


@pytest.mark.parametrize("variant", SHORTCUT_VARIANTS)
@pytest.mark.parametrize("block", ["post", "preact"])
def test_shortcut_path_is_the_unit_without_its_branch(variant, block):
    for in_channels, stride in ((8, 1), (4, 2)):  # shape-keeping, then downsampling (option B)
        torch.manual_seed(0)
        design = Design(block=block, shortcut="B", shortcut_variant=variant)
        u = Unit(in_channels, 8, stride, True, design).eval()
        nn.init.zeros_(u.conv2.weight)  # F = 0
        x = torch.randn(2, in_channels, 6, 6).relu()
        torch.testing.assert_close(u.shortcut_path(x), u(x))


def test_ablation_rows_match_the_paper_table():
    """conf/ablation/<row>.yaml sets exactly the options listed for that row in the code."""
    from omegaconf import OmegaConf

    files = {p.stem: p for p in (ROOT / "conf" / "ablation").glob("*.yaml")}
    assert set(files) == set(TABLE1_2016)
    for row, (options, _) in TABLE1_2016.items():
        assert OmegaConf.to_container(OmegaConf.load(files[row])) == options, row
        cifar_net(20, True, width=4, **options)  # each row builds


class FixupReferenceBlock(nn.Module):
    """Fixup's basic block as its authors wrote it (shortcut: option A on the biased input)."""

    def __init__(self, unit: Unit) -> None:
        super().__init__()
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.unit
        a1, b1, a2, b2 = u.fixup_bias
        out = F.relu(u.conv1(x + a1) + b1)
        out = u.conv2(out + a2) * u.fixup_scale + b2
        identity = x
        if u.changes_shape:
            identity = (x + a1)[:, :, ::2, ::2]
            identity = torch.cat([identity, torch.zeros_like(identity)], 1)
        return F.relu(out + identity)


@pytest.mark.parametrize(("in_channels", "stride"), [(8, 1), (4, 2)])
def test_fixup_unit_computes_fixups_block(in_channels, stride):
    torch.manual_seed(0)
    u = Unit(in_channels, 8, stride, True, Design(norm="none", init="fixup"))
    with torch.no_grad():  # away from the init, so that every term shows
        for p in u.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, in_channels, 6, 6).relu()
    out, ref = u(x), FixupReferenceBlock(u)(x)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), list(u.parameters()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(u.parameters()))
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


def test_fixup_scalars_learn_at_a_tenth_of_the_learning_rate():
    from functools import partial

    from degradation.module import DegradationModule

    net = cifar_net(8, True, width=4, norm="none", init="fixup")
    module = DegradationModule(net, optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9))
    scalars, others = module.configure_optimizers().param_groups
    assert scalars["lr"] == pytest.approx(0.01) and others["lr"] == pytest.approx(0.1)
    assert len(scalars["params"]) == 2 + 3 * 5  # stem and head biases; 4 biases, 1 scale/unit
    assert len(scalars["params"]) + len(others["params"]) == len(list(net.parameters()))
    plain_he = DegradationModule(cifar_net(8, True, width=4), optimizer=partial(torch.optim.SGD))
    assert len(plain_he.configure_optimizers().param_groups) == 1


NEW_PRESETS = {
    "shortcut_ablation_quick": 6,
    "preact_quick": 4,
    "dense_quick": 6,
    "norm_free_quick": 4,
    "shortcut_ablation_cifar10": 9,
    "preact_cifar10": 4,
}


@pytest.mark.parametrize("preset", sorted(NEW_PRESETS))
def test_new_presets_compose_into_nets_that_build(preset):
    """Every job of each preset composes, passes the run checks and builds its net."""
    import itertools

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from degradation.checks import check_config
    from degradation.config import check_keys, register

    register()
    parser = OverridesParser.create()
    names = set()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        base = compose("train", overrides=[f"experiment={preset}"], return_hydra_config=True)
        choices = []
        for key, value in base.hydra.sweeper.params.items():
            override = parser.parse_override(f"{key}={value}")
            values = (
                list(override.sweep_string_iterator())
                if override.is_sweep_override()
                else [override.get_value_element_as_str()]
            )
            choices.append([f"{key}={v}" for v in values])
        jobs = list(itertools.product(*choices))
        assert len(jobs) == NEW_PRESETS[preset]
        for job in jobs:
            cfg = compose("train", overrides=[f"experiment={preset}", *job])
            with open_dict(cfg):
                cfg.pop("hydra", None)
            check_keys(cfg)
            check_config(cfg)
            in_channels = 3 if "cifar10" in preset else 1
            net = instantiate(cfg.model, in_channels=in_channels, num_classes=10)
            names.add(run_name(cfg.model, "data", cfg.seed))
            assert model_fields(cfg.model)["family"] == net.family
    assert len(names) == len(jobs)  # every job has a run name of its own


def test_zero_last_bn_is_refused_for_pre_activation_units():
    """In a pre-activation unit the last BN comes before the last conv: zeroing it would leave
    the branch dead (zero output, zero gradients), so the combination is refused."""
    with pytest.raises(ValueError, match="pre-activation unit"):
        cifar_net(20, True, width=4, block="preact", init="zero_last_bn")
