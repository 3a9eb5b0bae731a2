"""Network in Network (Lin et al. 2014), the ImageNet model.

Each stage is a spatial convolution followed by two 1x1 "cccp" convolutions
(the micro network); the last stage maps straight to class scores and global
average pooling replaces dense layers, so the model has no dense layer at all.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.layers import (
    BN_MOMENTUM,
    POOLINGS,
    check_input_shape,
    check_positive,
    conv_bn_act,
    model_input,
    probabilities,
    regularizer,
    scaled,
)

# (filters, kernel, stride) of each stage's spatial convolution.
STAGES = ((96, 11, 4), (256, 5, 1), (384, 3, 1), (1024, 3, 1))


def nin(
    input_shape,
    num_classes: int,
    name: str = "nin",
    width_multiplier: float = 1.0,
    batch_norm: bool = False,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.5,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """Network-in-Network classifier or backbone.

    Args:
        width_multiplier: scales every convolution's filters.
        batch_norm: batch norm after each convolution (the paper has none).
        include_top: class-score convolution and global pooling, or the
            pooled features of the last micro network only.
        pooling: ``avg`` (the paper), ``max`` or ``None`` (feature map).
        dropout: dropout before the last stage (0.5 in the paper).
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum when ``batch_norm`` is on.
    """
    check_positive(width_multiplier=width_multiplier, num_classes=num_classes)
    if pooling not in POOLINGS or pooling == "flatten":
        raise ValueError(f"pooling must be avg, max or None. Received: pooling={pooling!r}")
    if include_top and pooling is None:
        raise ValueError("include_top=True needs pooling avg or max. Received: pooling=None")
    input_shape = check_input_shape(input_shape)
    reg = regularizer(weight_decay)
    conv_kw = {"reg": reg, "use_bias": not batch_norm, "bn": batch_norm, "bn_momentum": bn_momentum}
    inputs, x = model_input(input_shape, name)
    for s, (filters, kernel, stride) in enumerate(STAGES, start=1):
        last = s == len(STAGES)
        if last and dropout:
            x = layers.Dropout(dropout, name=f"{name}_stage{s}_dropout")(x)
        width = scaled(filters, width_multiplier)
        x = conv_bn_act(x, width, kernel, f"{name}_stage{s}_conv", strides=stride, **conv_kw)
        x = conv_bn_act(x, width, 1, f"{name}_stage{s}_cccp1", **conv_kw)
        if last:
            break
        x = conv_bn_act(x, width, 1, f"{name}_stage{s}_cccp2", **conv_kw)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_stage{s}_pool")(x)
    if include_top:
        x = layers.Conv2D(
            num_classes, 1, kernel_regularizer=reg, name=f"{name}_stage{len(STAGES)}_cccp2_scores"
        )(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name=f"{name}_avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name=f"{name}_max_pool")(x)
    if include_top:
        x = probabilities(x, name)
    return keras.Model(inputs, x, name=name)
