"""count_macs against hand-computed counts."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from kerasflow.models.flops import count_macs


def test_hand_computed_small_graph():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 * 3*3*3 = 6912
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4*4 * 9 = 576
    x = layers.Conv2D(6, 1, groups=2)(x)  # 4*4*6 * 1*1*2 = 192
    y = layers.SeparableConv2D(5, 3, padding="same")(x)  # 16*6*9 + 16*6*5 = 1344
    y = layers.Conv2DTranspose(2, 2, strides=2)(y)  # 4*4*5 * 2*2 * 2 = 640
    y = layers.GlobalAveragePooling2D()(y)
    y = layers.Dense(10)(y)  # 2*10 = 20
    model = keras.Model(inputs, y)
    assert count_macs(model) == 6912 + 576 + 192 + 1344 + 640 + 20


def test_shared_layer_counts_each_call_and_nested_models():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, layers.Dense(3)(inner_in))  # 12
    inputs = keras.Input((4,))
    shared = layers.Dense(4)  # 16 per call
    x = shared(shared(inputs))
    model = keras.Model(inputs, inner(x))
    assert count_macs(model) == 16 + 16 + 12


def test_dense_on_sequence_counts_every_position():
    inputs = keras.Input((5, 7))
    model = keras.Model(inputs, layers.Dense(3)(inputs))
    assert count_macs(model) == 5 * 7 * 3


def test_unknown_spatial_size_is_an_error():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="static spatial sizes.*Received: shape=\\(None, None"):
        count_macs(model)
