"""Every number the suite quotes from the papers it reproduces (no torch here).

He et al. 2015 ("Deep Residual Learning for Image Recognition"), He et al. 2016 ("Identity
Mappings in Deep Residual Networks"), Huang et al. 2017 (DenseNet). Errors are in percent.
"""

from __future__ import annotations

from typing import Any

# ---- He et al. 2015 ----------------------------------------------------------------------
# Table 6: CIFAR-10 test error (%) of ResNets (option A, width 16), with augmentation.
TABLE6_CIFAR_RESNET = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Table 6's parameter counts (millions) of the CIFAR ResNets.
TABLE6_PARAMS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
# Table 2: ImageNet top-1 validation error (%, 10-crop), plain and residual 18/34 (width 64).
TABLE2_IMAGENET = {("plain", 18): 27.94, ("plain", 34): 28.54, ("resnet", 18): 27.88,
                   ("resnet", 34): 25.03}  # fmt: skip
# Table 1: the ImageNet family, depth -> (block type, blocks per stage) ...
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
# ... and its multiply-adds ("FLOPs"), x 10^9.
TABLE1_FLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# Section 4.2: ResNet-110 warms up at lr 0.01 for about 400 iterations (from 110 layers on).
WARMUP_STEPS, WARMUP_FROM_DEPTH = 400, 110
# The output width of a bottleneck unit is this many times the width of its 3x3 conv.
BOTTLENECK_EXPANSION = 4

# ---- He et al. 2016 ----------------------------------------------------------------------
# The shortcut settings of Table 1: lambda 0.5 on the shortcut, gate bias -6 at init, dropout 0.5.
SHORTCUT_SCALE = 0.5
GATE_BIAS = -6.0
SHORTCUT_DROPOUT = 0.5
# Table 1: ResNet-110 on CIFAR-10, test error (%) of each shortcut setting (None: the paper
# reports that it fails to train well). The keys are the rows of conf/ablation/
# (``+ablation=<row>``); each row's model options are beside its number.
TABLE1_2016: dict[str, tuple[dict[str, Any], float | None]] = {
    "identity": ({"shortcut_variant": "identity"}, 6.61),
    "scaling": (
        {"shortcut_variant": "scaling", "shortcut_scale": SHORTCUT_SCALE, "scale_branch": True},
        12.35,
    ),
    "scaling_shortcut_only": (
        {"shortcut_variant": "scaling", "shortcut_scale": SHORTCUT_SCALE, "scale_branch": False},
        None,
    ),
    "exclusive_gating": ({"shortcut_variant": "exclusive_gating", "gate_bias": GATE_BIAS}, 8.70),
    "exclusive_gating_bias0": ({"shortcut_variant": "exclusive_gating", "gate_bias": 0.0}, None),
    "shortcut_gating": ({"shortcut_variant": "shortcut_gating", "gate_bias": GATE_BIAS}, 6.91),
    "shortcut_gating_bias0": ({"shortcut_variant": "shortcut_gating", "gate_bias": 0.0}, 12.86),
    "conv1x1": ({"shortcut_variant": "conv1x1"}, 12.22),
    "dropout": ({"shortcut_variant": "dropout", "shortcut_dropout": SHORTCUT_DROPOUT}, None),
}
# Tables 2 and 3 (CIFAR-10 test error, %): post- vs full pre-activation, by (depth, unit). For
# the 1001-layer preact net the paper also gives 4.89 +- 0.14 over 5 runs.
PREACT_2016: dict[tuple[int, str], dict[str, float]] = {
    (110, "basic"): {"post": 6.61, "preact": 6.37},
    (164, "bottleneck"): {"post": 5.93, "preact": 5.46},
    (1001, "bottleneck"): {"post": 7.61, "preact": 4.92},
}

# ---- Huang et al. 2017 -------------------------------------------------------------------
# DenseNet-BC's defaults: growth rate k = 12, compression 0.5.
DENSE_GROWTH_RATE, DENSE_COMPRESSION = 12, 0.5
