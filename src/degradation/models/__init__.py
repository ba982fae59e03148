"""The nets: the CIFAR family and its 2016 designs, the ImageNet family, DenseNet-BC.

The configs' ``_target_`` strings name the builders here (``degradation.models.cifar_net``,
``degradation.models.imagenet_net``, ``degradation.models.densenet``); the options they take are
tabled in :mod:`degradation.designs`, the papers' numbers in :mod:`degradation.paper`.
"""

from degradation.designs import (
    Design,
    check_dense_depth,
    check_depth,
    check_design,
    check_imagenet_depth,
    valid_depths,
)
from degradation.models.cifar import CifarNet, Unit, cifar_net
from degradation.models.densenet import DenseBlock, DenseLayer, DenseNet, Transition, densenet
from degradation.models.imagenet import (
    STEMS,
    BasicBlock,
    BottleneckBlock,
    ImageNetNet,
    imagenet_net,
)
from degradation.models.layers import (
    Gate,
    ScalarBias,
    Scale,
    ZeroPadShortcut,
    check_norm,
    check_sizes,
    conv3x3,
    count_parameters,
    he_init,
    make_shortcut,
    multiply_adds,
    norm2d,
    projection,
    variant_shortcut,
)

__all__ = [
    "STEMS",
    "BasicBlock",
    "BottleneckBlock",
    "CifarNet",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "Design",
    "Gate",
    "ImageNetNet",
    "ScalarBias",
    "Scale",
    "Transition",
    "Unit",
    "ZeroPadShortcut",
    "check_dense_depth",
    "check_depth",
    "check_design",
    "check_imagenet_depth",
    "check_norm",
    "check_sizes",
    "cifar_net",
    "conv3x3",
    "count_parameters",
    "densenet",
    "he_init",
    "imagenet_net",
    "make_shortcut",
    "multiply_adds",
    "norm2d",
    "projection",
    "valid_depths",
    "variant_shortcut",
]
