"""The 6n+2 family against the paper's facts."""

import pytest
import torch
import torch.nn.functional as F

from degradation.models import (
    Unit,
    ZeroPadShortcut,
    check_depth,
    cifar_net,
    count_parameters,
    valid_depths,
)

# Section 4.2 of the paper, option A, width 16, 3 input channels, 10 classes.
PAPER_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS))
@pytest.mark.parametrize("residual", [False, True])
def test_parameter_counts_match_paper(depth, residual):
    assert count_parameters(cifar_net(depth, residual)) == PAPER_PARAMS[depth]


def test_projection_shortcuts_add_parameters_where_expected():
    a = count_parameters(cifar_net(20, True, "A"))
    b = count_parameters(cifar_net(20, True, "B"))
    c = count_parameters(cifar_net(20, True, "C"))
    # B: two projections (16->32, 32->64), each 1x1 conv + BN.
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # C: a projection on each of the 9 shortcuts.
    widths = [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2
    assert c - a == sum(i * o + 2 * o for i, o in widths)


@pytest.mark.parametrize(
    "in_channels,size", [(3, 32), (1, 28), (1, 16)], ids=["cifar", "fmnist", "small"]
)
@pytest.mark.parametrize("residual", [False, True])
def test_output_shape(in_channels, size, residual):
    net = cifar_net(8, residual, in_channels=in_channels, num_classes=7)
    out = net(torch.randn(5, in_channels, size, size))
    assert out.shape == (5, 7)


def test_layer_count_is_6n_plus_2():
    for depth in (8, 20, 56):
        net = cifar_net(depth, False)
        weighted = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
        assert len(weighted) == depth


def test_plain_and_residual_differ_only_by_shortcuts():
    plain, res = cifar_net(14, False), cifar_net(14, True)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in res.named_parameters()]
    blocks = [m for m in res.modules() if isinstance(m, Unit)]
    assert len(blocks) == 6 and all(b.shortcut is not None for b in blocks)
    assert all(b.shortcut is None for b in plain.modules() if isinstance(b, Unit))


def test_zeroed_residual_branches_compute_the_shortcut_path():
    torch.manual_seed(0)
    net = cifar_net(14, True, "A").eval()
    for block in net.modules():
        if isinstance(block, Unit):
            torch.nn.init.zeros_(block.bn2.weight)
            torch.nn.init.zeros_(block.bn2.bias)
    x = torch.randn(4, 3, 32, 32)
    # By hand: stem, then only the option-A shortcuts (stride-2 subsample + zero channels) twice.
    h = F.relu(net.stem[1](net.stem[0](x)))
    h = h[:, :, ::2, ::2]
    h = torch.cat([h, torch.zeros_like(h)], dim=1)  # 16 -> 32 channels
    h = h[:, :, ::2, ::2]
    h = torch.cat([h, torch.zeros_like(h)], dim=1)  # 32 -> 64 channels
    expected = net.fc(h.mean(dim=(2, 3)))
    torch.testing.assert_close(net(x), expected)


def test_option_a_shortcut_subsamples_and_pads():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    y = ZeroPadShortcut(2, 5, 2)(x)
    assert y.shape == (1, 5, 2, 2)
    torch.testing.assert_close(y[:, :2], x[:, :, ::2, ::2])
    assert y[:, 2:].abs().sum() == 0


@pytest.mark.parametrize("depth", [0, 2, 7, 19, 21, 57, -4, 20.0, "20", True])
def test_invalid_depths_are_refused_with_valid_ones_named(depth):
    with pytest.raises(ValueError, match=r"6n\+2.*8, 14, 20"):
        cifar_net(depth, True)


def test_valid_depths():
    assert valid_depths(60) == [8, 14, 20, 26, 32, 38, 44, 50, 56]
    assert 1202 in valid_depths()
    assert check_depth(110) == 18


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"shortcut": "D"}, "shortcut must be one of A, B, C"),
        ({"width": 0}, "width must be a positive integer"),
        ({"in_channels": 0}, "in_channels must be a positive integer"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cifar_net(20, True, **kwargs)


def test_he_init_and_bn_identity():
    torch.manual_seed(0)
    net = cifar_net(56, False)
    conv = net.stages[2][0].conv2  # 64 -> 64, 3x3: fan_in = 576
    assert abs(conv.weight.std().item() - (2 / 576) ** 0.5) < 0.003
    bn = net.stages[2][0].bn2
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
