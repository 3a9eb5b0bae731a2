"""The Task protocol: everything that differs between tasks, and nothing else.

A task is a plain object (one instance per task, looked up by
``experiment.task`` through :func:`kerasflow.tasks.get`). Training,
evaluation, tuning, export and serving are written once, task-blind, and ask
the task for:

- the kind of target an example carries (``target``: what the pipeline reads and
  how geometric augmentation moves it) and how the data is prepared;
- the model: the kind of registered model it builds on and its head;
- the ``auto`` choices of the run config: loss, metrics, the checkpoint and
  early-stopping monitor, the champion metric; and which explicit values it accepts;
- callbacks that add the task's own metrics to each epoch's logs (mAP);
- what a trained model carries beyond its weights (its *contract*: class names,
  per-label thresholds, ...);
- its evaluation report, figures and HTML section;
- its serving signatures and JSON predictions;
- its LiteRT/ONNX outputs and how export verification scores and compares them.

Adding a task is a new module here, a source reader in ``pipelines/sources``
where its data needs one, and tests: see ``docs/architecture.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasflow.errors import ConfigError, ServingError
from kerasflow.progress import Stage

# The serving signatures every export has, whatever its task.
BYTES_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
TENSOR_SIGNATURE = "predict_tensor"
SIGNATURES = (BYTES_SIGNATURE, IMAGES_SIGNATURE, TENSOR_SIGNATURE)

# How far above chance a headline score must be for the model to be crowned
# champion (absolute: top-1 within 2 points of the majority-class rate is chance).
CHANCE_MARGIN = 0.02


@dataclass(frozen=True)
class ChanceCheck:
    """Whether a report's headline score is clearly above what a model that ignores its input gets.

    Attributes:
        passed: ``score > chance + margin`` (True when the chance level is unknown).
        metric: the report key judged (the task's headline, e.g. ``accuracy``).
        score: the model's value of ``metric``.
        chance: the best value a constant prediction reaches on the same split.
        reason: why it did not pass (empty when it did).
    """

    passed: bool
    metric: str
    score: float | None
    chance: float | None
    margin: float = CHANCE_MARGIN
    reason: str = ""


# Metric names where lower is better beside losses and errors: an explanation's deletion AUC,
# its correlation left after model randomisation, the gradient-masking flag.
LOWER_IS_BETTER = ("deletion_auc", "randomization_spearman", "gradient_masking")


def metric_mode(name: str, mode: str = "auto") -> str:
    """``min`` for losses, errors and :data:`LOWER_IS_BETTER` names when ``mode`` is ``auto``."""
    if mode != "auto":
        return mode
    lower = "loss" in name or "error" in name or name.endswith(LOWER_IS_BETTER)
    return "min" if lower else "max"


def safe_metric_name(name) -> str:
    """A label or class name made safe for an MLflow metric key."""
    return re.sub(r"[^0-9A-Za-z_.\-]", "_", str(name))


class Task:
    """Base of every task: shared defaults; subclasses set the class attributes and override.

    Attributes:
        name: the ``experiment.task`` value.
        target: the pipeline target kind: ``class``, ``mask``, ``multi_hot`` or ``boxes``.
        model_kind: the registered model kind it trains (``models.names(kind)``).
        losses: loss names the task accepts in ``compile.loss.name``; the first is ``auto``.
        metrics: metric names the task accepts in ``compile.metrics``.
        auto_metrics: what ``compile.metrics: auto`` means.
        monitor: the ``auto`` checkpoint / early-stopping / tuning monitor.
        champion: the ``auto`` champion metric (a test metric the report logs).
        explainable: the run's report includes explanation overlays.
        multi_worker: its data can be sharded per worker for the multi-worker loop.
        output_activation: the head's activation (``softmax`` or ``sigmoid``).
        adversarial: FGSM/PGD attacks are defined (:meth:`attack_loss`): adversarial
            evaluation and ``train.adversarial`` apply.
    """

    name: str = ""
    target: str = "class"
    model_kind: str = "classification"
    losses: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    auto_metrics: tuple[str, ...] = ()
    monitor: str = "val_accuracy"
    champion: str = "test_accuracy"
    explainable: bool = False
    multi_worker: bool = True
    output_activation: str = "softmax"
    adversarial: bool = False

    # ------------------------------------------------------------ config
    def loss_name(self, compile_config) -> str:
        """``compile.loss.name`` resolved (``auto`` is the task's first loss)."""
        name = compile_config.loss.name
        if name == "auto":
            return self.losses[0]
        if name not in self.losses:
            raise ConfigError(
                f"compile.loss.name {name!r} is not a loss for experiment.task {self.name!r}. "
                f"Use auto or one of: {', '.join(self.losses)}. Received: {name!r}"
            )
        return name

    def metric_names(self, compile_config) -> list[str]:
        """``compile.metrics`` resolved (``auto`` is :attr:`auto_metrics`), each checked."""
        names = compile_config.metrics
        if names == "auto":
            return list(self.auto_metrics)
        for name in names:
            if not self.accepts_metric(name):
                raise ConfigError(
                    f"compile.metrics has {name!r}, which is not a metric of experiment.task "
                    f"{self.name!r}. Use auto or names from: {', '.join(self.metrics)}. "
                    f"Received: {list(names)}"
                )
        return list(names)

    def accepts_metric(self, name: str) -> bool:
        return name in self.metrics

    def logged_metrics(self, compile_config) -> list[str]:
        """Names in each epoch's logs (without ``val_``): the loss, compiled and epoch metrics."""
        return ["loss", *self.metric_names(compile_config), *self.epoch_metric_names()]

    def epoch_metric_names(self) -> list[str]:
        """Metrics that :meth:`epoch_callbacks` add to the logs (without prefix)."""
        return []

    def resolve_monitor(self, name: str, compile_config, has_validation: bool) -> str:
        """A monitor setting (``auto`` or a metric name) as the key of an epoch's logs.

        ``val_`` names lose their prefix when there is no validation split (the
        training split then stands in).

        Raises:
            ConfigError: the name is not a metric this task logs.
        """
        key = self.monitor if name == "auto" else name
        known = self.logged_metrics(compile_config)
        if key.removeprefix("val_") not in known:
            choices = [*known, *(f"val_{k}" for k in known)]
            raise ConfigError(
                f"Monitor {name!r} is not a metric that a {self.name} run logs each epoch. "
                f"Use auto or one of: {', '.join(choices)}. Received: {name!r}"
            )
        if not has_validation:
            key = key.removeprefix("val_")
        return key

    def champion_metric(self, tracking_config) -> tuple[str, str]:
        """``(metric, mode)`` deciding the champion alias (``auto``: the task's headline)."""
        name = tracking_config.champion_metric
        metric = self.champion if name == "auto" else name
        return metric, metric_mode(metric, tracking_config.champion_mode)

    def check_config(self, cfg) -> None:
        """Check every task-dependent choice of a run config before anything runs."""
        self.loss_name(cfg.compile)
        self.metric_names(cfg.compile)
        for section in (cfg.train.checkpoint, cfg.train.early_stopping):
            self.resolve_monitor(section.monitor, cfg.compile, True)

    # ------------------------------------------------------------ data and model
    def prepare(self, data_config, seed: int, source=None):
        """Load the data source once and assign its splits."""
        from kerasflow import pipelines

        return pipelines.prepare(data_config, seed, source=source, target=self.target)

    def training_data(self, prepared, model):
        """What ``fit`` reads: an object with ``dataset(split, training=None)`` and ``size``."""
        return prepared

    def build_model(self, cfg, prepared):
        """The config's model for the prepared data (uncompiled), pixels scaled in its first layer."""
        from kerasflow import models

        return models.build(
            cfg.model.name,
            prepared.input_shape,
            prepared.num_classes,
            input_scaling=cfg.data,
            output_activation=self.output_activation,
            **cfg.model.params,
        )

    def fit_class_weight(self, setting, data) -> dict[int, float] | None:
        """``model.fit``'s ``class_weight`` for ``train.class_weight`` (None when unset).

        The base task has no per-example class to weigh: a set value is an error
        naming the task.
        """
        if setting is None:
            return None
        from kerasflow.errors import ConfigError

        raise ConfigError(
            f"train.class_weight is not supported for experiment.task {self.name!r}; "
            "classification (per image), segmentation (per pixel) and multilabel (per label) "
            "take it. Remove train.class_weight."
        )

    def weighted_training(self, setting, data, dataset):
        """``(training dataset, class_weight for model.fit)`` for ``train.class_weight``.

        A task whose targets are one class per example passes ``dataset`` through
        and gives Keras' ``class_weight`` (:meth:`fit_class_weight`); a dense or
        multi-label task adds a sample weight of the target's shape instead.
        """
        return dataset, self.fit_class_weight(setting, data)

    def training_loss(self, compile_config, num_classes: int, train_config=None):
        """The loss ``compile`` gets: :meth:`loss`, unless ``train_config`` asks for another."""
        return self.loss(compile_config, num_classes)

    def loss(self, compile_config, num_classes: int):
        from kerasflow.tasks.losses import get_loss

        kwargs = dict(compile_config.loss.params)
        if compile_config.loss.label_smoothing:
            kwargs["label_smoothing"] = compile_config.loss.label_smoothing
        return get_loss(self.loss_name(compile_config), **kwargs)

    def metric_objects(self, compile_config, num_classes: int) -> list:
        from kerasflow.tasks.metrics import get_metric

        return [get_metric(n, num_classes) for n in self.metric_names(compile_config)]

    def epoch_callbacks(self, data, split: str) -> tuple:
        """Callbacks adding the task's own metrics to each epoch's logs (``split``'s data)."""
        return ()

    def num_classes(self, model) -> int:
        """How many classes (labels) a built model of this task predicts."""
        return int(model.outputs[0].shape[-1])

    # ------------------------------------------------------------ after training
    def contract(self, model, data) -> dict[str, Any]:
        """What the trained model carries beside its weights (class names, thresholds, ...)."""
        return {"task": self.name, "class_names": [str(c) for c in data.class_names]}

    def evaluate(self, model, data, split: str, contract: dict, out_dir=None) -> dict:
        """The report of one split (figures written into ``out_dir`` when given).

        Predicts the split, then :meth:`report` of its targets and the model's
        outputs, then :meth:`write_figures`.
        """
        scores = predict(model, data.dataset(split, training=False))
        targets = data.labels(split)
        report = self.report(targets, scores, contract)
        if out_dir is not None:
            self.write_figures(report, targets, scores, data, split, Path(out_dir))
        return report

    def report(self, targets, scores, contract: dict) -> dict:
        """The task's metrics of a split's targets and the model's outputs."""
        raise NotImplementedError

    def robustness_score(self, model, data, split: str, contract: dict, transform=None) -> float:
        """The :attr:`headline` score of a split whose batched datasets pass through ``transform``.

        ``transform(dataset) -> dataset`` changes images only (a corruption), so
        the split's targets still hold. None scores the split as it is.
        """
        from kerasflow.pipelines.corruptions import TransformedData

        view = data if transform is None else TransformedData(data, transform)
        return float(self.evaluate(model, view, split, contract)[self.headline])

    def attack_loss(self, logits, targets):
        """Per-example loss an adversary raises (tensors of a batch); tasks with :attr:`adversarial`."""
        raise NotImplementedError(f"task {self.name!r} has no adversarial attack loss")

    def write_figures(self, report: dict, targets, scores, data, split: str, out: Path) -> list:
        """The report's PNG figures in ``out``; returns their paths."""
        return []

    def scalar_metrics(self, report: dict, prefix: str = "test_") -> dict[str, float]:
        """The report's headline numbers as flat MLflow metrics."""
        raise NotImplementedError

    def html_section(self, report: dict) -> str:
        """The report's tables as an HTML fragment (figures are added by the page)."""
        raise NotImplementedError

    # ------------------------------------------------------------ the champion gate
    @property
    def headline(self) -> str:
        """The report key of the task's headline score (its ``auto`` champion, unprefixed)."""
        return self.champion.removeprefix("test_")

    def chance_level(self, report: dict) -> float | None:
        """The :attr:`headline` score that the best constant prediction reaches on the report's split.

        None when the task cannot tell (then :meth:`beats_chance` passes).
        """
        return None

    def beats_chance(self, report: dict, margin: float = CHANCE_MARGIN) -> ChanceCheck:
        """Whether the report's headline score is more than ``margin`` above :meth:`chance_level`.

        A model that does not pass is registered but never aliased champion.

        Example:
            >>> check = tasks.get("classification").beats_chance(report)
            >>> check.passed, check.reason
            (False, 'test accuracy 0.100 is not above the chance level 0.101 (+0.02) ...')
        """
        metric = self.headline
        chance = self.chance_level(report)
        score = report.get(metric)
        if chance is None or score is None:
            return ChanceCheck(True, metric, score, chance, margin)
        score = float(score)
        if not math.isnan(score) and score > chance + margin:
            return ChanceCheck(True, metric, score, chance, margin)
        split = report.get("split", "test")
        reason = (
            f"{split} {metric} {score:.3f} is not above the chance level {chance:.3f} "
            f"(+{margin:g}) that a constant prediction reaches on the same split: "
            "the model has not learned from its input"
        )
        return ChanceCheck(False, metric, score, chance, margin, reason)

    # ------------------------------------------------------------ serving
    def serving_functions(self, model, data_config, contract: dict) -> dict:
        """``{signature: (function, input specs)}`` of an export (see :func:`image_signatures`)."""
        raise NotImplementedError

    def serving_metadata(self, contract: dict) -> dict:
        """Extra entries for the export's ``assets/kerasflow.json``."""
        return {}

    def json_predictions(self, outputs, contract: dict) -> list[dict]:
        """Signature outputs as one JSON-ready dict per image."""
        raise NotImplementedError

    def portable_outputs(self, model, contract: dict) -> Callable:
        """The outputs of a LiteRT / ONNX artefact: ``x -> {name: tensor}`` of builtin ops only.

        ``x`` is a float32 batch of model-input pixels (0..255). The names are
        what :mod:`kerasflow.tasks.predictions` reads, and ``probabilities``
        (what export verification compares with Keras by default) is always one of them.

        Raises:
            ServingError: the task has no portable artefact.
        """
        raise ServingError(
            f"Task {self.name!r} cannot be exported to LiteRT or ONNX. "
            "Export a SavedModel (--format saved_model)."
        )

    # ------------------------------------------------------------ export verification
    def verification_data(self, data, split: str, limit: int | None = None):
        """``(uint8 pixels N x h x w x c, targets)`` of a split, without augmentation.

        The pixels are what an artefact and the Keras model are both fed; the
        targets are what :meth:`verification_score` scores against (the split's
        labels; the first ``len(pixels)`` of them when ``limit`` cuts the split).
        """
        images = []
        for image, _ in data.dataset(split, training=False, batch=False):
            images.append(np.asarray(image))
            if limit is not None and len(images) >= limit:
                break
        if not images:
            return np.zeros((0, *data.input_shape), np.uint8), np.zeros((0,))
        pixels = np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8)
        return pixels, data.labels(split)[: len(pixels)]

    def reference_outputs(self, model, contract: dict) -> Callable:
        """``uint8 pixels -> {name: array}``: the Keras model's answer in the terms of
        :meth:`artefact_answers` (default: ``probabilities``, the model's output)."""
        import tensorflow as tf

        fn = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
        return lambda x: {"probabilities": np.asarray(fn(x), np.float32)}

    def artefact_answers(self, outputs: dict, contract: dict) -> dict:
        """An artefact's outputs (one batch) as :meth:`reference_outputs` gives Keras' answer
        (default: as they are; detection applies its NMS here)."""
        return outputs

    def verification_score(self, targets, answers: dict, contract: dict) -> float:
        """The :attr:`headline` score of a split's answers (Keras' or an artefact's)."""
        return float(self.report(targets, answers["probabilities"], contract)[self.headline])

    def verification_agreement(self, answers: dict, reference: dict, contract: dict) -> dict:
        """How closely an artefact's answers follow Keras': ``top1_agreement`` (the
        arg-max agrees: per image, per pixel for a map) and ``max_prob_diff`` (the
        largest absolute probability difference)."""
        probs, ref = answers["probabilities"], reference["probabilities"]
        return {
            "top1_agreement": float(np.mean(probs.argmax(-1) == ref.argmax(-1))),
            "max_prob_diff": float(np.abs(probs - ref).max()),
        }


# ---------------------------------------------------------------- shared helpers
def predict(model, dataset) -> np.ndarray:
    """Model outputs for every example of a batched dataset of ``(image, target)``.

    Long predictions (20 batches or more) report their progress (:mod:`kerasflow.progress`).
    """
    import keras

    images = dataset.map(lambda x, y: x)
    batches = int(images.cardinality())
    with Stage(
        "predicting", total=batches if batches >= 0 else None, unit="batch", min_items=20
    ) as stage:
        tick = keras.callbacks.LambdaCallback(on_predict_batch_end=lambda b, logs: stage.update())
        return np.asarray(model.predict(images, verbose=0, callbacks=[tick]))


def take_examples(data, split: str, indices) -> np.ndarray:
    """The preprocessed pixels at ``indices`` (dataset order) of one split, in that order."""
    wanted = {int(i): k for k, i in enumerate(indices)}
    images: list = [None] * len(wanted)
    if not wanted:
        return np.zeros((0, *data.input_shape), np.uint8)
    last = max(wanted)
    for i, (image, _) in enumerate(data.dataset(split, training=False, batch=False)):
        if i in wanted:
            images[wanted[i]] = image.numpy()
        if i >= last:
            break
    return np.stack(images)


def display_images(images) -> np.ndarray:
    """Pipeline pixels (0..255) as 0..1 floats for figures."""
    from kerasflow.pipelines.transforms import to_display

    return np.asarray(to_display(images))


def with_static_channels(image, channels: int):
    """The pipeline's channel policy for a uint8 image whose channel count is known only at run time."""
    import tensorflow as tf

    from kerasflow.pipelines.transforms import to_channels

    have = tf.shape(image)[-1]
    check = tf.debugging.Assert(
        tf.logical_and(have >= 1, have <= 4),
        ["images must have 1 to 4 channels (gray, gray+alpha, RGB, RGBA); received", have],
    )
    with tf.control_dependencies([check]):
        have = tf.identity(have)
    branches = [
        (lambda k=k: to_channels(tf.ensure_shape(image, [None, None, k]), channels))
        for k in (1, 2, 3, 4)
    ]
    return tf.switch_case(have - 1, branches)


def image_signatures(
    data_config,
    outputs: Callable,
    prepare_one: Callable | None = None,
    extra_spec=(),
    tensor_extras: Callable | None = None,
) -> dict:
    """The three serving signatures around a task's ``outputs`` function.

    Args:
        data_config: the run's data section (image size, channels, resize).
        outputs: ``outputs(x, *extra)`` of a batch of model-input pixels (float32
            0..255) and the per-image values ``prepare_one`` adds.
        prepare_one: ``image uint8 (h, w, c) -> (pixels, *extra)`` (default: the
            training pipeline's deterministic preprocessing, no extras).
        extra_spec: ``tf.TensorSpec`` of each extra value ``prepare_one`` returns.
        tensor_extras: ``inputs -> extras`` for ``predict_tensor``, whose inputs are
            already the model's (default: no extras).

    Returns:
        ``{signature name: (function, [input spec])}``.
    """
    import tensorflow as tf

    from kerasflow.pipelines.transforms import decode_image, preprocess

    height, width = (int(v) for v in data_config.image_size)
    channels = int(data_config.channels)
    pixels = tf.TensorSpec([height, width, channels], tf.uint8)
    if prepare_one is None:

        def prepare_one(image):
            return (preprocess(image, data_config),)

    spec = (pixels, *extra_spec)

    def run(images, load):
        prepared = tf.map_fn(
            lambda item: tuple(prepare_one(load(item))), images, fn_output_signature=spec
        )
        return outputs(tf.cast(prepared[0], tf.float32), *prepared[1:])

    def from_bytes(image_bytes):
        return run(image_bytes, lambda data: decode_image(data, channels))

    def from_images(images):
        return run(images, lambda image: with_static_channels(image, channels))

    def from_tensor(inputs):
        return outputs(inputs, *(tensor_extras(inputs) if tensor_extras else ()))

    return {
        BYTES_SIGNATURE: (from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        IMAGES_SIGNATURE: (
            from_images,
            [tf.TensorSpec([None, None, None, None], tf.uint8, name="images")],
        ),
        TENSOR_SIGNATURE: (
            from_tensor,
            [tf.TensorSpec([None, height, width, channels], tf.float32, name="inputs")],
        ),
    }


def class_weight_table(setting, counts, class_names: list[str]) -> np.ndarray:
    """:func:`class_weights` as a float32 array indexed by class id (for ``tf.gather``)."""
    weights = class_weights(setting, counts, class_names)
    return np.array([weights[i] for i in range(len(class_names))], np.float32)


def class_weights(setting, counts, class_names: list[str]) -> dict[int, float]:
    """``{class id: weight}`` for ``train.class_weight``.

    ``balanced``: ``n / (K * n_c)`` from the training split's counts (scikit-learn's
    rule; a class without training examples gets 0). A map: ``{class name: weight}``,
    classes it leaves out weigh 1.

    Raises:
        ConfigError: a name that is not a class.
    """
    from kerasflow.errors import ConfigError

    counts = np.asarray(counts, dtype=np.float64)
    if setting == "balanced":
        total, k = counts.sum(), len(counts)
        return {i: float(total / (k * c)) if c > 0 else 0.0 for i, c in enumerate(counts.tolist())}
    unknown = sorted(set(setting) - set(class_names))
    if unknown:
        raise ConfigError(
            f"train.class_weight names classes that the data does not have: {unknown}. "
            f"Use class names from: {class_names}"
        )
    return {i: float(setting.get(name, 1.0)) for i, name in enumerate(class_names)}
