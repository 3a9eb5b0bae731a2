"""Parameter counts and MACs at 224x224x3 / 1000 classes against keras.applications and papers.

Models are built (never run) at full size; counts come from the graph.
"""

from __future__ import annotations

import keras
import pytest

from kerasflow import models
from kerasflow.models.flops import count_macs

SHAPE, CLASSES = (224, 224, 3), 1000

# keras.applications twins: identical parameter counts.
KERAS_TWINS = {
    "resnet50": 25_636_712,
    "resnet50_v2": 25_613_800,
    "vgg16": 138_357_544,
    "mobilenet_v1": 4_253_864,
    "mobilenet_v2": 3_538_984,
    "densenet121": 8_062_504,
}
# No keras.applications twin: within 3% of the papers' tables.
PUBLISHED_PARAMS = {
    "alexnet": 61.1e6,
    "se_resnet50": 28.1e6,
}
# Multiply-accumulates within 5% of the papers.
PUBLISHED_MACS = {"resnet50": 4.1e9, "vgg16": 15.5e9, "mobilenet_v2": 300e6}


@pytest.fixture(scope="module")
def full_size():
    """Build each full-size model once for all tests in this module."""
    cache = {}

    def get(name, **params):
        key = (name, tuple(sorted(params.items())))
        if key not in cache:
            cache[key] = models.build(name, SHAPE, CLASSES, **params)
        return cache[key]

    yield get
    cache.clear()
    keras.backend.clear_session()


@pytest.mark.parametrize("name,expected", sorted(KERAS_TWINS.items()))
def test_params_equal_keras_applications(full_size, name, expected):
    assert full_size(name).count_params() == expected


@pytest.mark.parametrize("name,published", sorted(PUBLISHED_PARAMS.items()))
def test_params_within_3_percent_of_paper(full_size, name, published):
    assert full_size(name).count_params() == pytest.approx(published, rel=0.03)


@pytest.mark.parametrize("name,published", sorted(PUBLISHED_MACS.items()))
def test_macs_within_5_percent_of_paper(full_size, name, published):
    assert count_macs(full_size(name)) == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_googlenet_params_in_published_range(full_size, batch_norm):
    # Without auxiliary heads the literature gives 6.6M (torchvision) to 7.0M.
    params = full_size("googlenet", batch_norm=batch_norm).count_params()
    assert 6.6e6 * 0.97 <= params <= 7.0e6 * 1.03


def test_exact_known_values(full_size):
    # Regression guard: exact counts of the families without a keras twin.
    assert full_size("alexnet").count_params() == 61_100_840
    assert full_size("googlenet", batch_norm=False).count_params() == 6_998_552
    assert full_size("se_resnet50").count_params() == 28_167_704
    assert count_macs(full_size("vgg16")) == 15_470_264_320
    assert count_macs(full_size("mobilenet_v2")) == 300_774_272
    assert count_macs(full_size("resnet50")) == 4_089_184_256


@pytest.mark.parametrize(
    "name,params,application",
    [
        ("mobilenet_v2", {}, "MobileNetV2"),
        ("resnet50", {"stride_in_1x1": True}, "ResNet50"),
    ],
)
def test_macs_equal_keras_applications_architecture(full_size, name, params, application):
    twin = getattr(keras.applications, application)(weights=None)
    ours = full_size(name, **params)
    assert ours.count_params() == twin.count_params()
    assert count_macs(ours) == count_macs(twin)


def test_resnet_stride_placement_changes_macs_not_params(full_size):
    v15, v1 = full_size("resnet50"), full_size("resnet50", stride_in_1x1=True)
    assert v15.count_params() == v1.count_params()
    assert count_macs(v1) == pytest.approx(3.86e9, rel=0.01)
