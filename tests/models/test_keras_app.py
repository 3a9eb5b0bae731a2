"""The keras.applications passthrough: head, errors, offline weights."""

from __future__ import annotations

import keras
import pytest

from kerasflow import models
from kerasflow.errors import ModelError


def test_passthrough_matches_application_params():
    model = models.build("keras_app", (32, 32, 1), 7, application="MobileNet", alpha=0.25)
    app = keras.applications.MobileNet(
        include_top=False, weights=None, input_shape=(32, 32, 1), alpha=0.25
    )
    head = app.output.shape[-1] * 7 + 7
    assert model.count_params() == app.count_params() + head
    assert model.layers[-1].name == "keras_app_probabilities"
    assert tuple(model.output.shape) == (None, 7)


def test_frozen_backbone():
    model = models.build(
        "keras_app", (32, 32, 3), 2, application="MobileNet", alpha=0.25, trainable_backbone=False
    )
    assert [w.path for w in model.trainable_weights] == [
        "keras_app_logits/kernel",
        "keras_app_logits/bias",
    ]


def test_unknown_application_lists_choices():
    with pytest.raises(ModelError, match="Choose one of: .*ResNet50.*Received: application="):
        models.build("keras_app", (32, 32, 3), 2, application="ResNet49")


def test_bad_application_argument():
    with pytest.raises(ModelError, match="Received: app_kwargs=\\{'colour': 'red'\\}"):
        models.build("keras_app", (32, 32, 3), 2, application="MobileNet", colour="red")


def test_imagenet_needs_three_channels():
    with pytest.raises(ModelError, match="3 input channels"):
        models.build("keras_app", (32, 32, 1), 2, application="MobileNet", weights="imagenet")


def test_offline_imagenet_weights_name_the_fix(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example/w.h5: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ModelError) as info:
        models.build(
            "keras_app", (96, 96, 3), 2, application="MobileNet", alpha=0.25, weights="imagenet"
        )
    message = str(info.value)
    assert "offline" in message and "~/.keras/models" in message and "weights=None" in message
    assert message.endswith("Received: weights='imagenet'")
