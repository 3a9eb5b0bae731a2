"""U-Net (Ronneberger et al. 2015) with configurable depth and width.

Either the classic symmetric encoder, or any registered classification family
as the encoder (``encoder="resnet50"``, ``"mobilenet_v2"``, ``"keras_app"``
with ``encoder_params={"application": "EfficientNetB0", "weights":
"imagenet"}``): its feature maps at strides 2, 4, 8, ... become the skips.
Outputs per-pixel class probabilities at input resolution.
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
    model_input,
    probabilities,
    regularizer,
)

UPSAMPLING = ("transpose", "bilinear")


def _double_conv(x, filters, name, conv_kw):
    x = conv_bn_act(x, filters, 3, f"{name}_conv1", **conv_kw)
    return conv_bn_act(x, filters, 3, f"{name}_conv2", **conv_kw)


def _upsample(x, filters, reference, name, mode, reg):
    if mode == "transpose":
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", kernel_regularizer=reg, name=f"{name}_up"
        )(x)
    else:
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    if reference is not None and tuple(x.shape[1:3]) != tuple(reference.shape[1:3]):
        x = ResizeLike(name=f"{name}_up_resize")([x, reference])
    return x


def unet(
    input_shape,
    num_classes: int,
    name: str = "unet",
    depth: int = 4,
    width: int = 64,
    encoder: str | None = None,
    encoder_params: dict | None = None,
    upsampling: str = "transpose",
    batch_norm: bool = True,
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """U-Net segmentation model.

    Args:
        depth: number of downsampling steps of the classic encoder (the input
            height and width must be divisible by ``2**depth``). With a
            registered ``encoder`` the encoder's own depth is used and the
            decoder has one step per stride it exposes.
        width: filters of the first level; each deeper level doubles them.
        encoder: a registered classification model name used as the encoder,
            or ``None`` for the classic U-Net encoder.
        encoder_params: extra params for the encoder (``width_multiplier``,
            ``alpha``, ``application``, ``weights``, ...).
        upsampling: ``transpose`` (learned 2x2 transposed convolution) or
            ``bilinear``.
        batch_norm: batch norm after every decoder (and classic encoder) conv.
        dropout: dropout at the bottleneck.
        weight_decay: L2 factor on kernels.
        bn_momentum: batch-norm momentum.

    Example:
        >>> model = unet((128, 128, 3), 4, depth=3, width=16)
        >>> model.output.shape
        (None, 128, 128, 4)
    """
    if upsampling not in UPSAMPLING:
        raise ValueError(
            f"upsampling must be one of {UPSAMPLING}. Received: upsampling={upsampling!r}"
        )
    check_positive(depth=depth, width=width, num_classes=num_classes)
    input_shape = check_input_shape(input_shape)
    if None in input_shape[:2]:
        raise ValueError(
            f"unet needs a static height and width. Received: input_shape={input_shape}"
        )
    reg = regularizer(weight_decay)
    conv_kw = {"reg": reg, "use_bias": not batch_norm, "bn": batch_norm, "bn_momentum": bn_momentum}
    if encoder is None:
        factor = 2**depth
        if input_shape[0] % factor or input_shape[1] % factor:
            raise ValueError(
                f"Height and width must be divisible by 2**depth={factor}. "
                f"Received: input_shape={input_shape}, depth={depth}"
            )
        inputs, x = model_input(input_shape, name)
        skips = []
        for d in range(depth):
            x = _double_conv(x, width * 2**d, f"{name}_enc{d + 1}", conv_kw)
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"{name}_enc{d + 1}_pool")(x)
        x = _double_conv(x, width * 2**depth, f"{name}_bottleneck", conv_kw)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_bottleneck_dropout")(x)
        for d in reversed(range(depth)):
            prefix = f"{name}_dec{d + 1}"
            x = _upsample(x, width * 2**d, skips[d], prefix, upsampling, reg)
            x = layers.Concatenate(name=f"{prefix}_concat")([skips[d], x])
            x = _double_conv(x, width * 2**d, prefix, conv_kw)
    else:
        from kerasflow.models.registry import build, get_spec

        if get_spec(encoder).kind != "classification":
            raise ValueError(
                f"encoder must be a classification model name. Received: encoder={encoder!r}"
            )
        backbone = build(
            encoder,
            input_shape,
            1,
            model_name=f"{name}_encoder",
            **{**(encoder_params or {}), "include_top": False, "pooling": None},
        )
        inputs = backbone.inputs[0]
        features = feature_maps_by_stride(backbone)
        x = backbone.outputs[0]
        deepest = input_shape[0] // x.shape[1]
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_bottleneck_dropout")(x)
        stride = deepest // 2
        while stride >= 1:
            level = stride.bit_length() - 1  # stride 1 -> level 0
            prefix = f"{name}_dec{level + 1}"
            filters = max(1, width * 2**level // 2)
            skip = features.get(stride)  # stride 1 is the input itself
            x = _upsample(x, filters, skip, prefix, upsampling, reg)
            if skip is not None and stride > 1:
                x = layers.Concatenate(name=f"{prefix}_concat")([skip, x])
            x = _double_conv(x, filters, prefix, conv_kw)
            stride //= 2
    x = layers.Conv2D(num_classes, 1, kernel_regularizer=reg, name=f"{name}_logits")(x)
    outputs = probabilities(x, name)
    return keras.Model(inputs, outputs, name=name)
