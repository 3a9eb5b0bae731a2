"""DenseNet-BC (Huang et al. 2017): 121, 169 and 201 layers.

At 224x224x3 and 1000 classes DenseNet121 has exactly the 8,062,504
parameters of ``keras.applications.DenseNet121``.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.layers import (
    BN_MOMENTUM,
    batch_norm,
    check_input_shape,
    check_output_stride,
    check_positive,
    classifier_head,
    model_input,
    regularizer,
    scaled,
)

BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}


def _bn_relu_conv(x, filters, kernel, name, dilation, opts):
    x = batch_norm(x, f"{name}_bn", **opts["bn"])
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Conv2D(
        filters,
        kernel,
        padding="same",
        dilation_rate=dilation if kernel > 1 else 1,
        use_bias=False,
        kernel_regularizer=opts["reg"],
        name=f"{name}_conv",
    )(x)


def densenet(
    input_shape,
    num_classes: int,
    name: str = "densenet121",
    depth: int = 121,
    growth_rate: int = 32,
    compression: float = 0.5,
    width_multiplier: float = 1.0,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    output_stride: int = 32,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """DenseNet classifier or backbone.

    Args:
        depth: 121, 169 or 201.
        growth_rate: channels each dense layer adds (before ``width_multiplier``).
        compression: channel reduction of each transition layer.
        width_multiplier: scales the growth rate and stem filters.
        include_top: classifier head, or the pooled features only.
        pooling: ``avg``, ``max`` or ``None`` (feature map) for the features.
        dropout: dropout before the classifier.
        output_stride: 32, 16 or 8; later transitions skip their pooling and
            the following 3x3 convolutions dilate instead.
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum.
    """
    if depth not in BLOCKS:
        raise ValueError(f"depth must be one of {sorted(BLOCKS)}. Received: depth={depth}")
    if not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1]. Received: compression={compression}")
    check_output_stride(output_stride)
    check_positive(growth_rate=growth_rate, width_multiplier=width_multiplier)
    input_shape = check_input_shape(input_shape)
    opts = {"reg": regularizer(weight_decay), "bn": {"momentum": bn_momentum, "epsilon": 1.001e-5}}
    growth = scaled(growth_rate, width_multiplier)
    inputs, x = model_input(input_shape, name)
    x = layers.Conv2D(
        scaled(64, width_multiplier),
        7,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_regularizer=opts["reg"],
        name=f"{name}_stem_conv",
    )(x)
    x = batch_norm(x, f"{name}_stem_bn", **opts["bn"])
    x = layers.Activation("relu", name=f"{name}_stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_stem_pool")(x)
    stride, dilation = 4, 1
    blocks = BLOCKS[depth]
    for s, num_layers in enumerate(blocks, start=1):
        for i in range(1, num_layers + 1):
            prefix = f"{name}_dense{s}_layer{i}"
            y = _bn_relu_conv(x, 4 * growth, 1, f"{prefix}_1", dilation, opts)
            y = _bn_relu_conv(y, growth, 3, f"{prefix}_2", dilation, opts)
            x = layers.Concatenate(name=f"{prefix}_concat")([x, y])
        if s == len(blocks):
            break
        x = _bn_relu_conv(
            x, int(x.shape[-1] * compression), 1, f"{name}_transition{s}", dilation, opts
        )
        if stride * 2 <= output_stride:
            x = layers.AveragePooling2D(2, name=f"{name}_transition{s}_pool")(x)
            stride *= 2
        else:
            dilation *= 2
    x = batch_norm(x, f"{name}_final_bn", **opts["bn"])
    x = layers.Activation("relu", name=f"{name}_final_relu")(x)
    outputs = classifier_head(x, num_classes, name, include_top, pooling, dropout, opts["reg"])
    return keras.Model(inputs, outputs, name=name)
