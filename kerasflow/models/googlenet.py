"""GoogLeNet / Inception v1 (Szegedy et al. 2015), without the auxiliary heads.

Nine inception modules with the paper's filter table; at 224x224x3 and 1000
classes about 7.0M parameters (the paper's ~6.8M; its local response
normalisation is replaced by optional batch norm).
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.layers import (
    BN_MOMENTUM,
    check_input_shape,
    check_positive,
    classifier_head,
    conv_bn_act,
    model_input,
    regularizer,
    scaled,
)

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), "pool" = max pool 3/2.
MODULES = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    ("pool3", None),
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    ("pool4", None),
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)


def inception_module(x, filters, name: str, conv_kw: dict):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-5x5; pool-1x1) concatenated."""
    f1, r3, f3, r5, f5, fp = filters
    b1 = conv_bn_act(x, f1, 1, f"{name}_1x1", **conv_kw)
    b2 = conv_bn_act(x, r3, 1, f"{name}_3x3_reduce", **conv_kw)
    b2 = conv_bn_act(b2, f3, 3, f"{name}_3x3", **conv_kw)
    b3 = conv_bn_act(x, r5, 1, f"{name}_5x5_reduce", **conv_kw)
    b3 = conv_bn_act(b3, f5, 5, f"{name}_5x5", **conv_kw)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv_bn_act(b4, fp, 1, f"{name}_pool_proj", **conv_kw)
    return layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


def googlenet(
    input_shape,
    num_classes: int,
    name: str = "googlenet",
    width_multiplier: float = 1.0,
    batch_norm: bool = True,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.4,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """GoogLeNet classifier or backbone.

    Args:
        width_multiplier: scales every convolution's filters.
        batch_norm: batch norm after each convolution (convolutions then have
            no bias); ``False`` gives the paper's biased convolutions.
        include_top: classifier head, or the pooled features only.
        pooling: ``avg`` (the paper), ``max``, ``flatten`` or ``None``.
        dropout: dropout before the classifier (0.4 in the paper).
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum.
    """
    check_positive(width_multiplier=width_multiplier)
    input_shape = check_input_shape(input_shape)
    reg = regularizer(weight_decay)
    conv_kw = {"reg": reg, "use_bias": not batch_norm, "bn": batch_norm, "bn_momentum": bn_momentum}
    inputs, x = model_input(input_shape, name)
    x = conv_bn_act(x, scaled(64, width_multiplier), 7, f"{name}_conv1", strides=2, **conv_kw)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool1")(x)
    x = conv_bn_act(x, scaled(64, width_multiplier), 1, f"{name}_conv2_reduce", **conv_kw)
    x = conv_bn_act(x, scaled(192, width_multiplier), 3, f"{name}_conv2", **conv_kw)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool2")(x)
    for module, filters in MODULES:
        if filters is None:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_{module}")(x)
        else:
            filters = [scaled(f, width_multiplier) for f in filters]
            x = inception_module(x, filters, f"{name}_inception{module}", conv_kw)
    outputs = classifier_head(x, num_classes, name, include_top, pooling, dropout, reg)
    return keras.Model(inputs, outputs, name=name)
