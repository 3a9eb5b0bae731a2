"""DeepLab v3+ (Chen et al. 2018): a dilated backbone, ASPP and a light decoder.

The backbone (any registered family with ``output_stride``: ResNet, SE-ResNet,
MobileNet, VGG, DenseNet) keeps resolution with atrous convolutions; atrous
spatial pyramid pooling (ASPP) looks at several rates plus image-level context;
the decoder fuses the result with stride-4 features and upsamples to the input.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasflow.models.features import feature_maps_by_stride
from kerasflow.models.layers import (
    BN_MOMENTUM,
    ResizeLike,
    check_input_shape,
    check_positive,
    conv_bn_act,
    probabilities,
    regularizer,
)

DEFAULT_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


def aspp(
    x,
    name: str,
    filters: int = 256,
    rates=(6, 12, 18),
    dropout=0.1,
    reg=None,
    bn_momentum=BN_MOMENTUM,
):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 branches, image pooling.

    Returns the concatenated branches projected to ``filters`` channels.
    """
    conv_kw = {"reg": reg, "bn_momentum": bn_momentum}
    branches = [conv_bn_act(x, filters, 1, f"{name}_aspp_1x1", **conv_kw)]
    for i, rate in enumerate(rates, start=1):
        branches.append(
            conv_bn_act(x, filters, 3, f"{name}_aspp_rate{i}", dilation_rate=rate, **conv_kw)
        )
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_aspp_image_pool")(x)
    pooled = conv_bn_act(pooled, filters, 1, f"{name}_aspp_image", **conv_kw)
    pooled = ResizeLike("nearest", name=f"{name}_aspp_image_resize")([pooled, x])
    branches.append(pooled)
    y = layers.Concatenate(name=f"{name}_aspp_concat")(branches)
    y = conv_bn_act(y, filters, 1, f"{name}_aspp_project", **conv_kw)
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_aspp_dropout")(y)
    return y


def deeplab(
    input_shape,
    num_classes: int,
    name: str = "deeplab",
    backbone: str = "resnet50",
    backbone_params: dict | None = None,
    output_stride: int = 16,
    atrous_rates=None,
    aspp_filters: int = 256,
    decoder: bool = True,
    low_level_filters: int = 48,
    decoder_filters: int = 256,
    dropout: float = 0.1,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """DeepLab v3+ segmentation model.

    Args:
        backbone: a registered classification name that accepts ``output_stride``.
        backbone_params: extra params for the backbone (``width_multiplier``,
            ``alpha``, ...).
        output_stride: 8, 16 or 32: backbone resolution relative to the input.
        atrous_rates: the ASPP dilation rates; default (6, 12, 18) at output
            stride 16, doubled at 8.
        aspp_filters: channels of each ASPP branch.
        decoder: v3+ decoder with stride-4 features; ``False`` gives DeepLab v3.
        low_level_filters: channels the stride-4 features are reduced to.
        decoder_filters: channels of the decoder's 3x3 convolutions.
        dropout: dropout after ASPP.
        weight_decay: L2 factor on kernels (head and backbone).
        bn_momentum: batch-norm momentum (head and backbone).
    """
    if output_stride not in DEFAULT_RATES:
        raise ValueError(
            f"output_stride must be one of {sorted(DEFAULT_RATES)}. "
            f"Received: output_stride={output_stride}"
        )
    check_positive(
        num_classes=num_classes,
        aspp_filters=aspp_filters,
        low_level_filters=low_level_filters,
        decoder_filters=decoder_filters,
    )
    input_shape = check_input_shape(input_shape)
    if None in input_shape[:2]:
        raise ValueError(
            f"deeplab needs a static height and width. Received: input_shape={input_shape}"
        )
    rates = tuple(atrous_rates) if atrous_rates else DEFAULT_RATES[output_stride]
    reg = regularizer(weight_decay)
    from kerasflow.models.registry import build, get_spec

    if get_spec(backbone).kind != "classification":
        raise ValueError(
            f"backbone must be a classification model name. Received: backbone={backbone!r}"
        )
    params = {
        "weight_decay": weight_decay,
        "bn_momentum": bn_momentum,
        **(backbone_params or {}),
        "include_top": False,
        "pooling": None,
        "output_stride": output_stride,
    }
    base = build(backbone, input_shape, 1, model_name=f"{name}_backbone", **params)
    inputs = base.inputs[0]
    x = aspp(base.outputs[0], name, aspp_filters, rates, dropout, reg, bn_momentum)
    conv_kw = {"reg": reg, "bn_momentum": bn_momentum}
    if decoder:
        low = feature_maps_by_stride(base).get(4)
        if low is None:
            raise ValueError(
                f"Backbone {backbone!r} has no stride-4 feature map for the decoder; "
                f"use decoder=False. Received: backbone={backbone!r}"
            )
        low = conv_bn_act(low, low_level_filters, 1, f"{name}_decoder_low", **conv_kw)
        x = ResizeLike(name=f"{name}_decoder_up")([x, low])
        x = layers.Concatenate(name=f"{name}_decoder_concat")([x, low])
        x = conv_bn_act(x, decoder_filters, 3, f"{name}_decoder_conv1", **conv_kw)
        x = conv_bn_act(x, decoder_filters, 3, f"{name}_decoder_conv2", **conv_kw)
    x = layers.Conv2D(num_classes, 1, kernel_regularizer=reg, name=f"{name}_logits")(x)
    x = ResizeLike(name=f"{name}_logits_up")([x, inputs])
    outputs = probabilities(x, name)
    return keras.Model(inputs, outputs, name=name)
