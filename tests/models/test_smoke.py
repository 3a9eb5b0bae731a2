"""Every registered model: tiny variant builds, trains one step, saves and reloads safely."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow import models
from tests.models.tiny import TINY

NUM_CLASSES = 3
# Detection models have their own heads and tests (tests/models/test_detector*.py).
ZOO = models.names("classification") + models.names("segmentation")
# Deep variants share their code with a shallow sibling; they take longer to build.
SLOW = {n for n in ZOO if any(d in n for d in ("101", "152", "169", "201"))}


def _params(name):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in name]


def test_every_name_has_a_tiny_variant():
    assert set(TINY) == set(ZOO)


def _batch(name, shape, rng):
    x = rng.random((2, *shape), dtype="float32")
    if models.get_spec(name).kind == "segmentation":
        y = rng.integers(0, NUM_CLASSES, (2, *shape[:2]))
    else:
        y = rng.integers(0, NUM_CLASSES, (2,))
    return x, y


@pytest.mark.parametrize("name", _params(ZOO))
def test_builds_trains_one_step_and_reloads(name, tmp_path):
    shape, params = TINY[name]
    model = models.build(name, shape, NUM_CLASSES, **params)
    assert isinstance(model, keras.Model) and model.name == name
    segmentation = models.get_spec(name).kind == "segmentation"
    expected = (None, *shape[:2], NUM_CLASSES) if segmentation else (None, NUM_CLASSES)
    assert tuple(model.output.shape) == expected
    assert model.layers[-1].name == f"{name}_probabilities"
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)

    x, y = _batch(name, shape, np.random.default_rng(0))
    # Eager: one real optimizer step without the cost of tracing a deep graph. Clipped,
    # because batch statistics of two tiny random images make deep nets' gradients huge.
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, clipnorm=1.0),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss)
    changed = sum(
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, model.trainable_weights, strict=True)
    )
    assert changed > 0.9 * len(before)

    # Eager calls: tracing a predict function for a deep graph costs more than the test.
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (2, *expected[1:])
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(x, training=False)), probs)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    keras.backend.clear_session()
