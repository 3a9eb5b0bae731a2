"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018).

Width multiplier ``alpha`` scales every layer. At 224x224x3, 1000 classes and
``alpha=1.0`` the parameter counts equal ``keras.applications`` exactly
(MobileNet 4,253,864; MobileNetV2 3,538,984), MobileNetV2 at about 300 MMACs.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.layers import (
    BN_MOMENTUM,
    StrideSchedule,
    check_input_shape,
    check_output_stride,
    check_positive,
    classifier_head,
    conv_bn_act,
    depthwise_bn_act,
    model_input,
    regularizer,
    squeeze_excite,
)

# v1: (pointwise filters, depthwise stride) of the 13 separable blocks.
V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
# v2: (expansion, output filters, repeats, first stride) per bottleneck sequence.
V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check(alpha, output_stride, input_shape):
    check_positive(alpha=alpha)
    check_output_stride(output_stride)
    return check_input_shape(input_shape)


def mobilenet_v1(
    input_shape,
    num_classes: int,
    name: str = "mobilenet_v1",
    alpha: float = 1.0,
    depth_multiplier: int = 1,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 1e-3,
    output_stride: int = 32,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """MobileNet v1: a stem convolution and 13 depthwise-separable blocks.

    Args:
        alpha: width multiplier on every layer's filters.
        depth_multiplier: depthwise channel multiplier (resolution multiplier in
            the paper is just the input size).
        include_top: classifier head, or the pooled features only.
        pooling: ``avg``, ``max`` or ``None`` (feature map) for the features.
        dropout: dropout before the classifier.
        output_stride: 32, 16 or 8; later blocks dilate instead of striding.
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum.
    """
    input_shape = _check(alpha, output_stride, input_shape)
    check_positive(depth_multiplier=depth_multiplier)
    reg = regularizer(weight_decay)
    bn_kw = {"bn_momentum": bn_momentum, "bn_epsilon": 1e-3}
    inputs, x = model_input(input_shape, name)
    x = conv_bn_act(x, int(32 * alpha), 3, f"{name}_stem", strides=2, act="relu6", reg=reg, **bn_kw)
    strides = StrideSchedule(output_stride, current=2)
    for i, (filters, stride) in enumerate(V1_BLOCKS, start=1):
        stride, dilation = strides.resolve(stride)
        prefix = f"{name}_block{i}"
        x = depthwise_bn_act(
            x, prefix, 3, stride, dilation, depth_multiplier, "relu6", reg, **bn_kw
        )
        x = conv_bn_act(x, int(filters * alpha), 1, f"{prefix}_pw", act="relu6", reg=reg, **bn_kw)
    outputs = classifier_head(x, num_classes, name, include_top, pooling, dropout, reg)
    return keras.Model(inputs, outputs, name=name)


def inverted_residual(x, expansion, filters, stride, dilation, name, reg, bn_kw, se_reduction=0):
    """MobileNetV2 bottleneck: 1x1 expand, 3x3 depthwise, linear 1x1 project."""
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = conv_bn_act(
            y, expansion * in_channels, 1, f"{name}_expand", act="relu6", reg=reg, **bn_kw
        )
    y = depthwise_bn_act(y, name, 3, stride, dilation, 1, "relu6", reg, **bn_kw)
    if se_reduction:
        y = squeeze_excite(y, name, se_reduction, reg)
    y = conv_bn_act(y, filters, 1, f"{name}_project", act=None, reg=reg, **bn_kw)
    if stride == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def mobilenet_v2(
    input_shape,
    num_classes: int,
    name: str = "mobilenet_v2",
    alpha: float = 1.0,
    se_reduction: int = 0,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    output_stride: int = 32,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """MobileNetV2: inverted residual blocks with linear bottlenecks.

    Args:
        alpha: width multiplier (filters rounded to multiples of 8; the last
            1280-filter convolution only grows, never shrinks, as in the paper).
        se_reduction: squeeze-and-excitation ratio inside every block; 0 none.
        include_top: classifier head, or the pooled features only.
        pooling: ``avg``, ``max`` or ``None`` (feature map) for the features.
        dropout: dropout before the classifier.
        output_stride: 32, 16 or 8; later blocks dilate instead of striding.
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum.
    """
    input_shape = _check(alpha, output_stride, input_shape)
    reg = regularizer(weight_decay)
    bn_kw = {"bn_momentum": bn_momentum, "bn_epsilon": 1e-3}
    inputs, x = model_input(input_shape, name)
    x = conv_bn_act(
        x,
        make_divisible(32 * alpha),
        3,
        f"{name}_stem",
        strides=2,
        act="relu6",
        reg=reg,
        **bn_kw,
    )
    strides = StrideSchedule(output_stride, current=2)
    block = 0
    for expansion, filters, repeats, first_stride in V2_BLOCKS:
        for r in range(repeats):
            stride, dilation = strides.resolve(first_stride if r == 0 else 1)
            x = inverted_residual(
                x,
                expansion,
                make_divisible(int(filters * alpha)),
                stride,
                dilation,
                f"{name}_block{block}",
                reg,
                bn_kw,
                se_reduction,
            )
            block += 1
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = conv_bn_act(x, last, 1, f"{name}_head", act="relu6", reg=reg, **bn_kw)
    outputs = classifier_head(x, num_classes, name, include_top, pooling, dropout, reg)
    return keras.Model(inputs, outputs, name=name)
