"""Precision, XLA, EMA, gradient accumulation, class weights and balanced sampling, each cheaply.

Also: each switch is a tune.space path the tuner accepts.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasflow
from kerasflow import pipelines, tasks
from kerasflow.errors import ConfigError, DataError
from kerasflow.pipelines.sources import from_arrays
from kerasflow.space import parse_space
from kerasflow.tasks.base import class_weights
from kerasflow.training.compile import build_compiled_model
from kerasflow.training.fit import fit_model
from kerasflow.tuning.search_space import validate_space

TINY = [
    "model.params={width: 4, depth: 1, dense_units: 8}",
    "data.image_size=[8,8]",
    "data.batch_size=8",
    "train.epochs=2",
    "train.steps_per_epoch=2",
    "compile.schedule.warmup_epochs=0",
    "train.verbose=0",
]


def _arrays(counts=(40, 40, 40), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, k) for k, n in enumerate(counts)]).astype(np.int64)
    images = rng.integers(0, 255, (len(labels), 8, 8, 1), dtype=np.uint8)
    images[..., 0] += (labels * 60)[:, None, None].astype(np.uint8)
    return images, labels


def _prepared(cfg, counts=(40, 40, 40)):
    images, labels = _arrays(counts)
    source = from_arrays(images, labels, class_names=["a", "b", "c"])
    return pipelines.prepare(cfg.data, cfg.experiment.seed, source=source)


def _build(*extra):
    cfg = kerasflow.load_config(None, [*TINY, *extra])
    prepared = _prepared(cfg)
    return cfg, prepared, build_compiled_model(cfg, prepared)


@pytest.mark.slow
def test_mixed_bfloat16_builds_low_precision_layers_with_float32_outputs(tmp_path):
    cfg, prepared, model = _build("train.precision=mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # restored after the build
    conv = model.get_layer("simple_cnn_block1_conv1")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    out = model.predict(np.zeros((2, 8, 8, 1), np.uint8), verbose=0)
    assert out.dtype == np.float32
    history = fit_model(model, cfg, prepared, [])
    assert np.isfinite(history.history["loss"]).all()
    from kerasflow.serving.export import export_saved_model

    contract = tasks.get("classification").contract(model, prepared)
    exported = export_saved_model(model, tmp_path / "export", cfg.data, contract)
    loaded = tf.saved_model.load(str(exported.path))
    fn = loaded.signatures["serving_default"]
    floats = [t.dtype for t in fn.structured_outputs.values() if t.dtype.is_floating]
    assert floats and all(d == tf.float32 for d in floats)  # the probabilities serve float32


def test_mixed_float16_scales_the_loss():
    _, _, model = _build("train.precision=mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("simple_cnn_probabilities").compute_dtype == "float32"


@pytest.mark.slow
def test_jit_ema_and_accumulation_reach_keras():
    cfg, prepared, model = _build(
        "train.jit_compile=false",
        "compile.optimizer.ema=true",
        "compile.optimizer.ema_momentum=0.9",
        "train.gradient_accumulation_steps=2",
    )
    assert model.jit_compile is False
    opt = model.optimizer
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.9)
    assert opt.gradient_accumulation_steps == 2
    fit_model(model, cfg, prepared, [])
    # 2 epochs x 2 batches, accumulated over 2: the weights were updated twice.
    assert int(opt.iterations.numpy()) == 2
    _, _, xla = _build("train.jit_compile=true")
    assert xla.jit_compile is True


def test_class_weights_balanced_and_by_name():
    weights = class_weights("balanced", [10, 30, 60], ["a", "b", "c"])
    assert weights == pytest.approx({0: 100 / 30, 1: 100 / 90, 2: 100 / 180})
    assert class_weights({"b": 3.0}, [1, 1, 1], ["a", "b", "c"]) == {0: 1.0, 1: 3.0, 2: 1.0}
    with pytest.raises(ConfigError, match=r"\['z'\]"):
        class_weights({"z": 2.0}, [1, 1], ["a", "b"])
    cfg = kerasflow.load_config(None, [*TINY, "train.class_weight=balanced"])
    prepared = _prepared(cfg, counts=(10, 40, 90))
    got = tasks.get("classification").fit_class_weight("balanced", prepared)
    counts = np.bincount(prepared.labels("train"), minlength=3)
    assert got[0] > got[1] > got[2]
    assert got[0] == pytest.approx(counts.sum() / (3 * counts[0]))
    with pytest.raises(ConfigError, match="segmentation"):
        tasks.get("segmentation").fit_class_weight("balanced", prepared)


def _train_labels(prepared, batches):
    ds = prepared.dataset("train")
    return np.concatenate([y.numpy() for _, y in ds.take(batches)])


def test_balanced_sampling_draws_classes_evenly_and_repeatably():
    cfg = kerasflow.load_config(None, [*TINY, "data.sampling=balanced"])
    prepared = _prepared(cfg, counts=(8, 40, 120))
    assert "balance" in [step.stage for step in prepared.plan("train")]
    first = _train_labels(prepared, 30)
    counts = np.bincount(first, minlength=3) / len(first)
    assert np.all(np.abs(counts - 1 / 3) < 0.06), counts
    assert np.array_equal(first, _train_labels(prepared, 30))  # the same under the seed
    natural = _prepared(kerasflow.load_config(None, TINY), counts=(8, 40, 120))
    assert np.bincount(natural.labels("train"), minlength=3)[0] < 10
    # Validation and test are never resampled.
    assert "balance" not in [step.stage for step in prepared.plan("test")]


def test_balanced_sampling_needs_class_targets():
    cfg = kerasflow.load_config(
        None,
        [
            "experiment.task=segmentation",
            "model.name=unet",
            "data.source=synthetic:shapes_segmentation",
            "data.sampling=balanced",
        ],
    )
    prepared = tasks.get("segmentation").prepare(cfg.data, 0)
    with pytest.raises(DataError, match="needs class targets"):
        prepared.plan("train")


def test_switches_are_searchable():
    space = {
        "train.precision": {"choice": ["float32", "mixed_bfloat16"]},
        "train.jit_compile": {"choice": [True, False]},
        "compile.optimizer.ema": {"boolean": False},
        "train.gradient_accumulation_steps": {"int": [1, 4]},
        "train.class_weight": {"choice": ["balanced"]},
        "data.sampling": {"choice": ["natural", "balanced"]},
        "train.finetune.lr_factor": {"float": [0.01, 0.5], "sampling": "log"},
    }
    base = {
        "model": {"pretrained": "/tmp/x.keras"},
        "train": {"finetune": {"freeze_epochs": 1}, "epochs": 3},
    }
    validate_space(base, parse_space(space))
    with pytest.raises(ConfigError, match="train.precision"):
        validate_space(base, parse_space({"train.precision": {"choice": ["float8"]}}))
