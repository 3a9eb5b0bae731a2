"""ResNet v1 and v2 (He et al. 2016a, 2016b) and SE-ResNet (Hu et al. 2018).

One private builder backs every depth (18, 34, 50, 101, 152), both versions and
the squeeze-and-excitation variant. At 224x224x3 and 1000 classes ResNet50 and
ResNet50V2 have exactly the parameter counts of ``keras.applications``
(25,636,712 and 25,613,800): like those, v1 convolutions carry a bias and v2
puts the stride on the last block of a stage.

Version 1 puts the stride of a bottleneck on its 3x3 convolution ("v1.5", the
torchvision layout: ~4.1 GMACs for ResNet-50, better accuracy); pass
``stride_in_1x1=True`` for the original paper / ``keras.applications`` layout
(~3.9 GMACs, same parameters).
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.layers import (
    BN_MOMENTUM,
    StrideSchedule,
    batch_norm,
    check_input_shape,
    check_output_stride,
    check_positive,
    classifier_head,
    model_input,
    regularizer,
    scaled,
    squeeze_excite,
)

STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _conv(x, filters, kernel, name, strides=1, dilation=1, use_bias=True, reg=None):
    return layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        dilation_rate=dilation if kernel > 1 else 1,
        use_bias=use_bias,
        kernel_regularizer=reg,
        name=name,
    )(x)


def _block_v1(x, filters, kind, stride, dilation, name, opts):
    """Post-activation residual block; bottleneck output has ``4 * filters`` channels."""
    reg, bias, bn_kw = opts["reg"], opts["use_bias"], opts["bn"]
    out_channels = filters * 4 if kind == "bottleneck" else filters
    if stride > 1 or x.shape[-1] != out_channels:
        shortcut = _conv(
            x, out_channels, 1, f"{name}_shortcut_conv", stride, use_bias=bias, reg=reg
        )
        shortcut = batch_norm(shortcut, f"{name}_shortcut_bn", **bn_kw)
    else:
        shortcut = x
    if kind == "bottleneck":
        s1, s3 = (stride, 1) if opts["stride_in_1x1"] else (1, stride)
        y = _conv(x, filters, 1, f"{name}_conv1", s1, use_bias=bias, reg=reg)
        y = batch_norm(y, f"{name}_bn1", **bn_kw)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
        y = _conv(y, filters, 3, f"{name}_conv2", s3, dilation, use_bias=bias, reg=reg)
        y = batch_norm(y, f"{name}_bn2", **bn_kw)
        y = layers.Activation("relu", name=f"{name}_relu2")(y)
        y = _conv(y, out_channels, 1, f"{name}_conv3", use_bias=bias, reg=reg)
        y = batch_norm(y, f"{name}_bn3", **bn_kw)
    else:
        y = _conv(x, filters, 3, f"{name}_conv1", stride, dilation, use_bias=bias, reg=reg)
        y = batch_norm(y, f"{name}_bn1", **bn_kw)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
        y = _conv(y, filters, 3, f"{name}_conv2", 1, dilation, use_bias=bias, reg=reg)
        y = batch_norm(y, f"{name}_bn2", **bn_kw)
    if opts["se_reduction"]:
        y = squeeze_excite(y, name, opts["se_reduction"], reg)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _block_v2(x, filters, kind, stride, dilation, name, opts):
    """Pre-activation residual block (BN-ReLU before each convolution)."""
    reg, bn_kw = opts["reg"], opts["bn"]
    out_channels = filters * 4 if kind == "bottleneck" else filters
    preact = batch_norm(x, f"{name}_preact_bn", **bn_kw)
    preact = layers.Activation("relu", name=f"{name}_preact_relu")(preact)
    if x.shape[-1] != out_channels:
        shortcut = _conv(preact, out_channels, 1, f"{name}_shortcut_conv", stride, reg=reg)
    elif stride > 1:
        shortcut = layers.MaxPooling2D(1, strides=stride, name=f"{name}_shortcut_pool")(x)
    else:
        shortcut = x
    if kind == "bottleneck":
        y = _conv(preact, filters, 1, f"{name}_conv1", use_bias=False, reg=reg)
        y = batch_norm(y, f"{name}_bn1", **bn_kw)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
        y = _conv(y, filters, 3, f"{name}_conv2", stride, dilation, use_bias=False, reg=reg)
        y = batch_norm(y, f"{name}_bn2", **bn_kw)
        y = layers.Activation("relu", name=f"{name}_relu2")(y)
        y = _conv(y, out_channels, 1, f"{name}_conv3", reg=reg)
    else:
        y = _conv(preact, filters, 3, f"{name}_conv1", stride, dilation, use_bias=False, reg=reg)
        y = batch_norm(y, f"{name}_bn1", **bn_kw)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
        y = _conv(y, filters, 3, f"{name}_conv2", 1, dilation, reg=reg)
    if opts["se_reduction"]:
        y = squeeze_excite(y, name, opts["se_reduction"], reg)
    return layers.Add(name=f"{name}_out")([shortcut, y])


def resnet(
    input_shape,
    num_classes: int,
    name: str = "resnet50",
    depth: int = 50,
    version: int = 1,
    se_reduction: int = 0,
    width_multiplier: float = 1.0,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    output_stride: int = 32,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
    bn_epsilon: float = 1.001e-5,
    stride_in_1x1: bool = False,
    use_bias: bool = True,
):
    """ResNet classifier or backbone.

    Args:
        depth: 18, 34 (basic blocks), 50, 101 or 152 (bottleneck blocks).
        version: 1 (post-activation) or 2 (pre-activation).
        se_reduction: squeeze-and-excitation bottleneck ratio in every block
            (16 in SE-ResNet); 0 for none.
        width_multiplier: scales every filter count (tiny variants for tests).
        include_top: classifier head, or the pooled features only.
        pooling: ``avg``, ``max`` or ``None`` (feature map) for the features.
        dropout: dropout rate before the classifier.
        output_stride: 32 (standard), 16 or 8: the last stages use dilated
            (atrous) convolutions instead of striding, for dense prediction.
        weight_decay: L2 factor on convolution and dense kernels.
        bn_momentum: batch-norm moving-average momentum.
        bn_epsilon: batch-norm epsilon.
        stride_in_1x1: v1 bottleneck only; stride on the first 1x1 convolution
            (paper and keras.applications) rather than on the 3x3 (v1.5).
        use_bias: v1 only; bias on convolutions (keras.applications does).

    Example:
        >>> model = resnet((224, 224, 3), 1000, depth=50)
        >>> model.count_params()
        25636712
    """
    if depth not in STAGES:
        raise ValueError(f"depth must be one of {sorted(STAGES)}. Received: depth={depth}")
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2. Received: version={version}")
    check_output_stride(output_stride)
    if se_reduction < 0:
        raise ValueError(f"se_reduction must be >= 0. Received: se_reduction={se_reduction}")
    check_positive(width_multiplier=width_multiplier)
    input_shape = check_input_shape(input_shape)
    kind, blocks = STAGES[depth]
    opts = {
        "reg": regularizer(weight_decay),
        "use_bias": use_bias,
        "bn": {"momentum": bn_momentum, "epsilon": bn_epsilon},
        "stride_in_1x1": stride_in_1x1,
        "se_reduction": se_reduction,
    }
    inputs, x = model_input(input_shape, name)
    x = _conv(x, scaled(64, width_multiplier), 7, f"{name}_stem_conv", 2, reg=opts["reg"])
    if version == 1:
        x = batch_norm(x, f"{name}_stem_bn", bn_momentum, bn_epsilon)
        x = layers.Activation("relu", name=f"{name}_stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_stem_pool")(x)
    strides = StrideSchedule(output_stride, current=4)
    block = _block_v1 if version == 1 else _block_v2
    for s, num_blocks in enumerate(blocks):
        filters = scaled(64 * 2**s, width_multiplier)
        for b in range(num_blocks):
            if version == 1:
                stride = 2 if s > 0 and b == 0 else 1
            else:
                stride = 2 if s < len(blocks) - 1 and b == num_blocks - 1 else 1
            stride, dilation = strides.resolve(stride)
            x = block(x, filters, kind, stride, dilation, f"{name}_stage{s + 2}_block{b + 1}", opts)
    if version == 2:
        x = batch_norm(x, f"{name}_post_bn", bn_momentum, bn_epsilon)
        x = layers.Activation("relu", name=f"{name}_post_relu")(x)
    outputs = classifier_head(x, num_classes, name, include_top, pooling, dropout, opts["reg"])
    return keras.Model(inputs, outputs, name=name)
