"""Multi-label classification: any number of labels per image, a sigmoid head, tuned thresholds.

An example's target is a multi-hot ``(K,)`` float vector (``target:
multi_hot``; sources: a CSV/JSONL manifest with a ``labels`` column of
``|``-separated names, ``.npz`` with 2-D labels, TFRecord/TFDS list or
multi-hot features, ``synthetic:shapes_multilabel``). The model is any
classification model of the zoo with a sigmoid instead of a softmax on its
head; the loss is binary cross-entropy (or binary focal). After training, one
decision threshold per label is chosen on the validation split (maximum F1)
and becomes part of the model's contract: the report, the export's metadata
and the serving graph all use it. The report
(:mod:`kerasflow.tasks.multilabel_report`): micro, macro and samples F1,
precision and recall, per-label AP and mAP, subset accuracy, Hamming loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasflow.tasks import multilabel_report as mlr
from kerasflow.tasks import predictions
from kerasflow.tasks.base import Task, class_weights, image_signatures, predict

# compile.metrics names -> Keras metric factories (num_labels -> metric); thresholds 0.5.
METRIC_FACTORIES = {
    "binary_accuracy": lambda k: _keras().metrics.BinaryAccuracy(name="binary_accuracy"),
    "micro_f1": lambda k: _keras().metrics.F1Score(average="micro", threshold=0.5, name="micro_f1"),
    "macro_f1": lambda k: _keras().metrics.F1Score(average="macro", threshold=0.5, name="macro_f1"),
    "precision": lambda k: _keras().metrics.Precision(name="precision"),
    "recall": lambda k: _keras().metrics.Recall(name="recall"),
    "auc": lambda k: _keras().metrics.AUC(multi_label=True, num_labels=k, name="auc"),
}


def positive_weights(setting, targets, class_names) -> np.ndarray:
    """The weight of each label's positives for ``train.class_weight`` (float32, per label).

    ``balanced``: ``negatives / positives`` of the label in ``targets`` (the
    training split's multi-hot rows), so both sides of every label weigh the
    same in total; a label without positives weighs 1. A map ``{label: weight}``
    as given (labels it leaves out weigh 1).
    """
    targets = np.asarray(targets, np.float64) > 0.5
    if setting != "balanced":
        weights = class_weights(setting, np.ones(len(class_names)), class_names)
        return np.array([weights[i] for i in range(len(class_names))], np.float32)
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    return np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0).astype(np.float32)


def with_positive_weights(dataset, weights):
    """``dataset`` of ``(images, targets)`` with a third element ``1 + (w - 1) * target``.

    With the per-label cross-entropy (:class:`kerasflow.tasks.losses.PerLabelBinaryCrossentropy`)
    that is ``-(w * y * log p + (1 - y) * log(1 - p))`` for 0/1 targets.
    """
    import tensorflow as tf

    extra = tf.constant(np.asarray(weights, np.float32) - 1.0)

    def add_weights(images, targets):
        return images, targets, 1.0 + extra * tf.cast(targets, tf.float32)

    return dataset.map(add_weights, num_parallel_calls=tf.data.AUTOTUNE)


def _loss_from_config(cls, compile_config, name: str):
    """``cls`` built from ``compile.loss.params`` (and its label smoothing)."""
    from kerasflow.errors import ConfigError

    params = dict(compile_config.loss.params)
    if compile_config.loss.label_smoothing:
        params["label_smoothing"] = compile_config.loss.label_smoothing
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Bad compile.loss.params for {name}: {exc} Received: {params}") from exc


def _keras():
    import keras

    return keras


class MultilabelTask(Task):
    """Independent labels per image (sigmoid over ``K`` labels)."""

    name = "multilabel"
    target = "multi_hot"
    model_kind = "classification"
    losses = ("binary_crossentropy", "focal")
    metrics = tuple(METRIC_FACTORIES)
    auto_metrics = ("binary_accuracy", "micro_f1")
    monitor = "val_micro_f1"
    champion = "test_micro_f1"
    explainable = True
    output_activation = "sigmoid"
    adversarial = True

    def check_config(self, cfg) -> None:
        super().check_config(cfg)
        if cfg.train.class_weight is not None and self.loss_name(cfg.compile) != (
            "binary_crossentropy"
        ):
            from kerasflow.errors import ConfigError

            raise ConfigError(
                "train.class_weight for multilabel weighs each label's positives in the binary "
                f"cross-entropy; compile.loss {self.loss_name(cfg.compile)!r} cannot take it. "
                "Use compile.loss.name: binary_crossentropy, or remove train.class_weight."
            )

    def weighted_training(self, setting, data, dataset):
        """Per-label positive weights (:func:`positive_weights`) as a ``(batch, K)`` sample weight."""
        if setting is None:
            return dataset, None
        weights = positive_weights(setting, data.labels("train"), data.class_names)
        return with_positive_weights(dataset, weights), None

    def training_loss(self, compile_config, num_classes: int, train_config=None):
        """With ``train.class_weight``: the cross-entropy per label, weighed per label."""
        if train_config is None or train_config.class_weight is None:
            return self.loss(compile_config, num_classes)
        from kerasflow.tasks.losses import PerLabelBinaryCrossentropy

        return _loss_from_config(PerLabelBinaryCrossentropy, compile_config, "binary_crossentropy")

    def loss(self, compile_config, num_classes: int):
        import keras

        name = self.loss_name(compile_config)
        cls = (
            keras.losses.BinaryCrossentropy
            if name == "binary_crossentropy"
            else keras.losses.BinaryFocalCrossentropy
        )
        return _loss_from_config(cls, compile_config, name)

    def metric_objects(self, compile_config, num_classes: int) -> list:
        return [METRIC_FACTORIES[n](num_classes) for n in self.metric_names(compile_config)]

    def contract(self, model, data) -> dict:
        """Class names and one threshold per label, chosen for F1 on the validation split."""
        split = "validation" if data.size("validation") else "train"
        scores = predict(model, data.dataset(split, training=False))
        thresholds = mlr.choose_thresholds(data.labels(split), scores)
        return {
            **super().contract(model, data),
            "thresholds": [float(t) for t in thresholds],
            "thresholds_split": split,
        }

    def report(self, targets, scores, contract: dict) -> dict:
        report = mlr.multilabel_report(
            targets, scores, contract["class_names"], thresholds=contract["thresholds"]
        )
        report["thresholds_split"] = contract.get("thresholds_split")
        return report

    def write_figures(self, report, targets, scores, data, split: str, out: Path) -> list[Path]:
        return mlr.write_figures(report, targets, scores, out, split)

    def attack_loss(self, logits, targets):
        """Binary cross-entropy summed over the labels: the attack flips any label it can."""
        import tensorflow as tf

        labels = tf.cast(targets, tf.float32)
        per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_sum(per_label, axis=-1)

    def scalar_metrics(self, report: dict, prefix: str = "test_") -> dict[str, float]:
        out = mlr.scalar_metrics(report, prefix)
        return {**out, f"{prefix}loss": report["loss"]} if "loss" in report else out

    def html_section(self, report: dict) -> str:
        return mlr.html_section(report)

    def chance_level(self, report: dict) -> float | None:
        """The best micro F1 of predicting one fixed set of labels for every image.

        For a fixed set size the most frequent labels are best, so it is the
        maximum over the ``k`` most frequent labels, k = 1..K.
        """
        n = report.get("num_examples", 0)
        supports = sorted(
            (v["support"] for v in report.get("per_label", {}).values()), reverse=True
        )
        positives = sum(supports)
        if not n or not positives:
            return None
        hits = np.cumsum(supports)
        predicted = n * np.arange(1, len(supports) + 1)
        return float((2 * hits / (predicted + positives)).max())

    def serving_functions(self, model, data_config, contract: dict) -> dict:
        import tensorflow as tf

        names = tf.constant(contract["class_names"], tf.string)
        portable = self.portable_outputs(model, contract)

        def outputs(x):
            out = portable(x)
            # One row per image: the names over their thresholds, "" elsewhere.
            return {**out, "label_names": tf.where(out["predicted"] > 0, names, "")}

        return image_signatures(data_config, outputs)

    def serving_metadata(self, contract: dict) -> dict:
        return {"thresholds": contract["thresholds"]}

    def portable_outputs(self, model, contract: dict):
        import tensorflow as tf

        values = [float(t) for t in contract["thresholds"]]

        def outputs(x):
            # Made inside the graph: a captured eager tensor would become an ONNX input.
            thresholds = tf.constant(values, tf.float32)
            probabilities = tf.cast(model(x, training=False), tf.float32)
            predicted = tf.cast(probabilities >= thresholds, tf.int32)
            return {"probabilities": probabilities, "predicted": predicted}

        return outputs

    def json_predictions(self, outputs, contract: dict) -> list[dict]:
        return predictions.multilabel(outputs, contract)
