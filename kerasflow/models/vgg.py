"""VGG (Simonyan & Zisserman 2015), configurations A/B/D/E = VGG 11/13/16/19.

At 224x224x3 and 1000 classes VGG16 has exactly the 138,357,544 parameters of
``keras.applications.VGG16`` and about 15.5 GMACs.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.layers import (
    BN_MOMENTUM,
    check_input_shape,
    check_output_stride,
    check_positive,
    classifier_head,
    conv_bn_act,
    model_input,
    regularizer,
    scaled,
)

CONFIGS = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
FILTERS = (64, 128, 256, 512, 512)


def vgg(
    input_shape,
    num_classes: int,
    name: str = "vgg16",
    depth: int = 16,
    batch_norm: bool = False,
    width_multiplier: float = 1.0,
    fc_units: int = 4096,
    include_top: bool = True,
    pooling: str | None = "flatten",
    dropout: float = 0.5,
    output_stride: int = 32,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """VGG classifier or backbone.

    Args:
        depth: 11, 13, 16 or 19 weight layers.
        batch_norm: batch norm after every convolution (the convolution then
            has no bias).
        width_multiplier: scales every convolution's filters.
        fc_units: units of the two hidden dense layers (4096 in the paper).
        include_top: classifier head, or the pooled features only.
        pooling: ``flatten`` (the paper), ``avg``, ``max`` or ``None``.
        dropout: dropout after each hidden dense layer.
        output_stride: 32, 16 or 8: the last pools are dropped and the later
            convolutions dilated instead.
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum when ``batch_norm`` is on.
    """
    if depth not in CONFIGS:
        raise ValueError(f"depth must be one of {sorted(CONFIGS)}. Received: depth={depth}")
    check_output_stride(output_stride)
    check_positive(width_multiplier=width_multiplier, fc_units=fc_units)
    input_shape = check_input_shape(input_shape)
    reg = regularizer(weight_decay)
    inputs, x = model_input(input_shape, name)
    stride, dilation = 1, 1
    for s, (convs, filters) in enumerate(zip(CONFIGS[depth], FILTERS, strict=True)):
        for c in range(convs):
            x = conv_bn_act(
                x,
                scaled(filters, width_multiplier),
                3,
                f"{name}_stage{s + 1}_conv{c + 1}",
                dilation_rate=dilation,
                use_bias=not batch_norm,
                reg=reg,
                bn=batch_norm,
                bn_momentum=bn_momentum,
            )
        if stride * 2 <= output_stride:
            x = layers.MaxPooling2D(2, name=f"{name}_stage{s + 1}_pool")(x)
            stride *= 2
        else:
            dilation *= 2
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
