"""AlexNet (Krizhevsky et al. 2012), single-tower form as in torchvision.

Filters 64-192-384-256-256 and two 4096-unit dense layers: at 224x224x3 and
1000 classes, 61,100,840 parameters (the paper's ~61M).
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


def alexnet(
    input_shape,
    num_classes: int,
    name: str = "alexnet",
    width_multiplier: float = 1.0,
    fc_units: int = 4096,
    batch_norm: bool = False,
    include_top: bool = True,
    pooling: str | None = "flatten",
    dropout: float = 0.5,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """AlexNet classifier or backbone; inputs need at least 63x63 pixels.

    Args:
        width_multiplier: scales every convolution's filters.
        fc_units: units of the two hidden dense layers.
        batch_norm: batch norm after each convolution (the paper has none).
        include_top: classifier head, or the pooled features only.
        pooling: ``flatten`` (the paper), ``avg``, ``max`` or ``None``.
        dropout: dropout after each hidden dense layer.
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum when ``batch_norm`` is on.
    """
    check_positive(width_multiplier=width_multiplier, fc_units=fc_units)
    input_shape = check_input_shape(input_shape, min_size=63)
    reg = regularizer(weight_decay)
    conv_kw = {"reg": reg, "use_bias": not batch_norm, "bn": batch_norm, "bn_momentum": bn_momentum}
    inputs, x = model_input(input_shape, name)
    x = layers.ZeroPadding2D(2, name=f"{name}_conv1_pad")(x)
    x = conv_bn_act(
        x, scaled(64, width_multiplier), 11, f"{name}_conv1", strides=4, padding="valid", **conv_kw
    )
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool1")(x)
    x = conv_bn_act(x, scaled(192, width_multiplier), 5, f"{name}_conv2", **conv_kw)
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool2")(x)
    x = conv_bn_act(x, scaled(384, width_multiplier), 3, f"{name}_conv3", **conv_kw)
    x = conv_bn_act(x, scaled(256, width_multiplier), 3, f"{name}_conv4", **conv_kw)
    x = conv_bn_act(x, scaled(256, width_multiplier), 3, f"{name}_conv5", **conv_kw)
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool5")(x)
    outputs = classifier_head(
        x,
        num_classes,
        name,
        include_top,
        pooling,
        reg=reg,
        hidden_units=(fc_units, fc_units),
        hidden_dropout=dropout,
    )
    return keras.Model(inputs, outputs, name=name)
