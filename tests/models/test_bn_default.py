"""Every family's batch norm uses the zoo's default momentum unless a config sets ``bn_momentum``."""

import inspect

import keras
import pytest

from kerasflow import models
from kerasflow.models.layers import BN_MOMENTUM
from kerasflow.models.registry import get_spec
from tests.models.tiny import tiny

# One variant of every family that has batch norm (keras_app's layers are Keras').
FAMILIES = [
    "simple_cnn", "alexnet", "nin", "googlenet", "mobilenet_v1", "mobilenet_v2", "vgg11",
    "resnet18", "resnet18_v2", "se_resnet18", "densenet121", "unet", "deeplab",
]  # fmt: skip


def _batch_norms(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_batch_norms(layer))
    return found


def test_default_momentum_is_0_9():
    assert BN_MOMENTUM == 0.9


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_defaults_to_the_zoo_momentum(name):
    shape, params = tiny(name)
    accepted = inspect.signature(get_spec(name).factory()).parameters
    if "batch_norm" in accepted:  # families where batch norm is optional: turn it on
        params = {**params, "batch_norm": True}
    model = models.build(name, shape, 3, **params)
    momenta = {bn.momentum for bn in _batch_norms(model)}
    assert momenta == {BN_MOMENTUM}, (name, momenta)
    if "bn_momentum" in accepted:
        assert accepted["bn_momentum"].default == BN_MOMENTUM
