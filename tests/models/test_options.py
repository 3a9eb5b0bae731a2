"""Options shared across families: heads, pooling, dilation, weight decay, BN momentum, SE."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow import models
from kerasflow.errors import ModelError
from kerasflow.models.features import feature_maps_by_stride
from kerasflow.models.layers import ResizeLike, squeeze_excite

SMALL = {
    "resnet18": {"width_multiplier": 0.125},
    "resnet50_v2": {"width_multiplier": 0.125},
    "vgg11": {"width_multiplier": 0.0625},
    "densenet121": {"width_multiplier": 0.125},
    "mobilenet_v1": {"alpha": 0.25},
    "mobilenet_v2": {"alpha": 0.35},
}


@pytest.mark.parametrize(
    "name,output_stride",
    [
        ("resnet18", 16),
        ("resnet50_v2", 8),
        ("vgg11", 8),
        ("densenet121", 8),
        ("mobilenet_v1", 16),
        ("mobilenet_v2", 8),
    ],
)
def test_output_stride_dilates_last_stages(name, output_stride):
    model = models.build(
        name,
        (64, 64, 3),
        5,
        include_top=False,
        pooling=None,
        output_stride=output_stride,
        **SMALL[name],
    )
    assert model.output.shape[1:3] == (64 // output_stride, 64 // output_stride)
    dilations = {
        layer.dilation_rate[0]
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D)
    }
    # VGG's last skipped pool has no convolution after it to dilate.
    assert max(dilations) == (16 if name.startswith("vgg") else 32) // output_stride
    # Dilation changes resolution, never the weights.
    reference = models.build(name, (64, 64, 3), 5, include_top=False, pooling=None, **SMALL[name])
    assert model.count_params() == reference.count_params()


@pytest.mark.parametrize("pooling,shape", [("avg", (None, 64)), ("max", (None, 64))])
def test_features_only(pooling, shape):
    model = models.build(
        "resnet18", (32, 32, 3), 10, include_top=False, pooling=pooling, width_multiplier=0.125
    )
    assert tuple(model.output.shape) == shape
    assert not any(layer.name.endswith("_probabilities") for layer in model.layers)
    feature_map = models.build("resnet18", (32, 32, 3), 10, include_top=False, pooling=None)
    assert tuple(feature_map.output.shape) == (None, 1, 1, 512)


def test_include_top_needs_pooling():
    with pytest.raises(ModelError, match="Received: pooling=None"):
        models.build("resnet18", (32, 32, 3), 10, pooling=None)


def test_weight_decay_bn_momentum_and_dropout_reach_layers():
    model = models.build(
        "mobilenet_v2",
        (32, 32, 3),
        4,
        alpha=0.35,
        weight_decay=1e-4,
        bn_momentum=0.9,
        dropout=0.2,
    )
    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]
    assert all(layer.kernel_regularizer is not None for layer in convs)
    depthwise = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert all(layer.depthwise_regularizer.l2 == pytest.approx(1e-4) for layer in depthwise)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {bn.momentum for bn in bns} == {0.9}
    assert model.get_layer("mobilenet_v2_dropout").rate == 0.2
    assert len(model.losses) == len(convs) + len(depthwise)
    plain = models.build("mobilenet_v2", (32, 32, 3), 4, alpha=0.35)
    assert plain.losses == []


def test_layer_names_follow_position():
    model = models.build("resnet50", (32, 32, 3), 3, width_multiplier=0.125)
    names = {layer.name for layer in model.layers}
    assert "resnet50_stage2_block3_conv2" in names
    assert "resnet50_stage5_block1_shortcut_conv" in names
    assert all(n.startswith("resnet50_") for n in names)
    se = models.build("se_resnet18", (32, 32, 3), 3, width_multiplier=0.125)
    assert "se_resnet18_stage3_block2_se_expand" in {layer.name for layer in se.layers}


def test_resnet_v1_puts_stride_on_3x3_unless_asked():
    v15 = models.build("resnet50", (64, 64, 3), 3, width_multiplier=0.125)
    v1 = models.build("resnet50", (64, 64, 3), 3, width_multiplier=0.125, stride_in_1x1=True)
    assert v15.get_layer("resnet50_stage3_block1_conv2").strides == (2, 2)
    assert v1.get_layer("resnet50_stage3_block1_conv1").strides == (2, 2)


def test_squeeze_excite_is_reusable_and_gates_channels():
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, squeeze_excite(inputs, "x", reduction=4))
    assert model.count_params() == (8 * 2 + 2) + (2 * 8 + 8)
    x = np.random.default_rng(0).random((1, 4, 4, 8), dtype="float32")
    out = model.predict_on_batch(x)
    ratio = out / x  # one sigmoid gate per channel, in (0, 1)
    np.testing.assert_allclose(ratio, ratio[:, :1, :1, :].repeat(4, 1).repeat(4, 2), rtol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()


def test_resize_like_config_and_shapes():
    layer = ResizeLike("nearest", name="r")
    assert layer.get_config()["interpolation"] == "nearest"
    restored = ResizeLike.from_config(layer.get_config())
    x, ref = keras.Input((3, 5, 2)), keras.Input((7, 9, 1))
    assert tuple(restored([x, ref]).shape) == (None, 7, 9, 2)
    with pytest.raises(ValueError, match="Received: interpolation='cubic'"):
        ResizeLike("cubic")
    with pytest.raises(ValueError, match="known height and width"):
        ResizeLike()([x, keras.Input((None, None, 1))])


def test_feature_maps_by_stride_on_keras_application():
    app = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(64, 64, 3), alpha=0.35
    )
    features = feature_maps_by_stride(app)
    assert sorted(features) == [1, 2, 4, 8, 16, 32]
    assert features[4].shape[1:3] == (16, 16)
    assert features[32] is app.output


@pytest.mark.parametrize("channels", [1, 3])
def test_unet_depth_width_and_encoder(channels):
    plain = models.build("unet", (48, 48, channels), 2, depth=4, width=4)
    assert tuple(plain.output.shape) == (None, 48, 48, 2)
    assert plain.get_layer("unet_bottleneck_conv2_conv").filters == 4 * 2**4
    encoded = models.build(
        "unet",
        (40, 40, channels),
        2,
        width=4,
        upsampling="bilinear",
        encoder="resnet18",
        encoder_params={"width_multiplier": 0.125},
    )
    assert tuple(encoded.output.shape) == (None, 40, 40, 2)
    names = {layer.name for layer in encoded.layers}
    assert "unet_encoder_stage4_block2_out" in names
    assert "unet_dec1_conv2_conv" in names


def test_deeplab_has_aspp_with_dilations_and_full_resolution_output():
    model = models.build(
        "deeplab",
        (48, 40, 3),
        6,
        backbone="mobilenet_v2",
        output_stride=8,
        backbone_params={"alpha": 0.35},
        aspp_filters=8,
        decoder_filters=8,
    )
    assert tuple(model.output.shape) == (None, 48, 40, 6)
    rates = [model.get_layer(f"deeplab_aspp_rate{i}_conv").dilation_rate for i in (1, 2, 3)]
    assert rates == [(12, 12), (24, 24), (36, 36)]
    v3 = models.build(
        "deeplab",
        (32, 32, 3),
        6,
        backbone="resnet18",
        decoder=False,
        backbone_params={"width_multiplier": 0.125},
        aspp_filters=8,
    )
    assert not any("decoder" in layer.name for layer in v3.layers)
