"""Object detection: boxes and classes per image, CenterNet heads, COCO mAP.

The pipeline yields ``(image, {"boxes", "classes"})`` (see
:mod:`kerasflow.pipelines.detection_data`); :meth:`DetectionTask.training_data`
binds the dense CenterNet targets of the model's output size
(:mod:`~kerasflow.tasks.detection.targets`) so that the shared training path
fits it like any other model. Each epoch's logs get ``val_map50`` and
``val_map`` (:class:`~kerasflow.tasks.detection.evaluation.MapCallback`);
the report is COCO mAP with per-class APs and a grid of predicted boxes.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from kerasflow.tasks import report_html
from kerasflow.tasks.base import Task

DECODE = {"max_detections": 100, "score_threshold": 0.05, "iou_threshold": 0.5}
SUMMARY = (
    ("num_examples", "examples"),
    ("map50", "mAP@0.5"),
    ("map75", "mAP@0.75"),
    ("map", "mAP@[0.5:0.95] (COCO)"),
    ("loss", "loss"),
)


class DetectionTrainingData:
    """Detection data whose ``dataset()`` yields the model's dense targets.

    What ``model.fit`` and ``model.evaluate`` read; everything else is the
    wrapped :class:`~kerasflow.pipelines.detection_data.DetectionData` (``.data``).
    """

    def __init__(self, data, targets_fn):
        self.data = data
        self.targets_fn = targets_fn

    def dataset(self, split: str, training: bool | None = None, batch: bool = True):
        return self.data.dataset(split, training, batch, targets_fn=self.targets_fn)

    def __getattr__(self, name):
        return getattr(self.data, name)


def box_data(data):
    """The box data behind ``data`` (unwraps :class:`DetectionTrainingData`)."""
    return data.data if isinstance(data, DetectionTrainingData) else data


class DetectionTask(Task):
    """Boxes and classes per image (CenterNet)."""

    name = "detection"
    target = "boxes"
    model_kind = "detection"
    losses = ("centernet",)
    metrics = ()
    auto_metrics = ()
    monitor = "val_map"
    champion = "test_map50"
    multi_worker = False  # box data has no per-worker sharding plan

    def __init__(self):
        self._detectors = weakref.WeakKeyDictionary()  # model -> traced decoding detector

    def epoch_metric_names(self) -> list[str]:
        return ["map50", "map"]

    def logged_metrics(self, compile_config) -> list[str]:
        box = compile_config.loss.params.get("box_loss", "l1")
        terms = ["heatmap_loss", "offset_loss", f"box_{box}_loss"]
        return ["loss", *terms, *self.epoch_metric_names()]

    def num_classes(self, model) -> int:
        from kerasflow.models.detector import num_classes_of

        return num_classes_of(model)

    def prepare(self, data_config, seed: int, source=None):
        from kerasflow.errors import DataError
        from kerasflow.pipelines.detection_data import prepare_detection

        if source is not None:
            raise DataError(
                "Detection data is read from data.source; an in-memory source is not supported."
            )
        return prepare_detection(data_config, seed)

    def training_data(self, prepared, model):
        from kerasflow.tasks.detection.targets import make_targets_fn

        data = box_data(prepared)
        return DetectionTrainingData(
            data, make_targets_fn(data.num_classes, model.outputs[0].shape[1:3])
        )

    def loss(self, compile_config, num_classes: int):
        from kerasflow.errors import ConfigError
        from kerasflow.tasks.detection.centernet_loss import CenterNetLoss

        self.loss_name(compile_config)
        params = compile_config.loss.params
        try:
            return CenterNetLoss(num_classes, **params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"Bad compile.loss.params for centernet: {exc} Received: {params}"
            ) from exc

    def metric_objects(self, compile_config, num_classes: int) -> list:
        from kerasflow.tasks.detection.centernet_loss import term_metrics

        self.metric_names(compile_config)
        return term_metrics(num_classes, self.loss(compile_config, num_classes).box_loss)

    def epoch_callbacks(self, data, split: str) -> tuple:
        from kerasflow.tasks.detection.evaluation import MapCallback

        return (MapCallback(box_data(data), split),)

    def contract(self, model, data) -> dict:
        return {**super().contract(model, data), "decode": dict(DECODE)}

    def evaluate(self, model, data, split: str, contract: dict, out_dir=None) -> dict:
        from kerasflow.tasks.detection.evaluation import evaluate_detection

        grid = Path(out_dir) / f"predictions_{split}.png" if out_dir is not None else None
        return evaluate_detection(
            model, box_data(data), split, grid_path=grid, detect=self._detector(model)
        )

    def robustness_score(self, model, data, split: str, contract: dict, transform=None) -> float:
        """mAP@0.5 of the split, its box data's images passed through ``transform``.

        The decoding detector is traced once per model and reused by the ~40 calls
        of a corruption evaluation.
        """
        from kerasflow.pipelines.corruptions import TransformedData
        from kerasflow.tasks.detection.evaluation import evaluate_detection

        boxes = box_data(data)
        view = boxes if transform is None else TransformedData(boxes, transform)
        result = evaluate_detection(model, view, split, detect=self._detector(model))
        return float(result[self.headline])

    def _detector(self, model):
        """The model's traced decoding detector (one trace per model, reused by every call)."""
        from kerasflow.tasks.detection.evaluation import detector_fn

        if model not in self._detectors:
            self._detectors[model] = detector_fn(model)
        return self._detectors[model]

    def scalar_metrics(self, report: dict, prefix: str = "test_") -> dict[str, float]:
        from kerasflow.tasks.detection.evaluation import scalar_metrics

        out = scalar_metrics(report, prefix)
        return {**out, f"{prefix}loss": report["loss"]} if "loss" in report else out

    def chance_level(self, report: dict) -> float | None:
        """0: a detector that finds no boxes has an mAP@0.5 of 0."""
        return 0.0

    def html_section(self, report: dict) -> str:
        rows = [
            [n, v["ap50"], v["ap75"], v["ap"], v["num_gt"], v["num_detections"]]
            for n, v in report.get("per_class", {}).items()
        ]
        headers = ["class", "AP@0.5", "AP@0.75", "AP@[0.5:0.95]", "true boxes", "detections"]
        return "\n".join(
            [
                "<h2>Summary</h2>",
                report_html.summary_table(report, SUMMARY),
                "<h2>Per class</h2>",
                report_html.table(headers, rows),
            ]
        )

    def serving_functions(self, model, data_config, contract: dict) -> dict:
        from kerasflow.tasks.detection.serving import detection_functions

        decode = contract.get("decode", DECODE)
        return detection_functions(model, data_config, contract["class_names"], **decode)

    def serving_metadata(self, contract: dict) -> dict:
        from kerasflow.tasks.detection.serving import BOX_FORMAT

        return {"box_format": BOX_FORMAT, "decode": contract.get("decode", DECODE)}

    def json_predictions(self, outputs, contract: dict) -> list[dict]:
        from kerasflow.tasks.predictions import detection

        return detection(outputs, contract)

    # ------------------------------------------------------------ LiteRT / ONNX
    def portable_outputs(self, model, contract: dict):
        """The heatmap peaks, decoded in builtin ops; the NMS runs after the runtime.

        Outputs: ``boxes`` ``[N, P, 4]`` (``[ymin, xmin, ymax, xmax]`` fractions of
        the model input), ``scores`` ``[N, P]`` (best first), ``classes`` ``[N, P]``
        int32 of the ``P`` top heatmap peaks (3x3 max-pool test, top-k; ``P`` is the
        decoder's ``top_k``, 100), and ``probabilities``, the heatmap ``[N, h, w, K]``
        (what verification compares with Keras). Class-wise NMS, the score threshold
        and ``max_detections`` of the contract's ``decode`` are applied in NumPy by
        :func:`kerasflow.tasks.predictions.padded_detections`: LiteRT's NMS kernels take one
        image at a time, and a loop over the batch needs TensorList ops that are no
        builtins.

        Raises:
            ServingError: ``model`` is already a decoding model (export the trained heads).
        """
        import tensorflow as tf

        from kerasflow.errors import ServingError
        from kerasflow.models.detector import DEFAULT_TOP_K, decode_peaks

        if isinstance(model.outputs[0], dict) or len(model.outputs) > 1:
            raise ServingError(
                f"Model {model.name!r} already decodes its detections (combined NMS, no LiteRT "
                "builtin); export the trained detector whose output is the CenterNet heads."
            )
        k = self.num_classes(model)

        def outputs(x):
            head = tf.cast(model(x, training=False), tf.float32)
            heat, boxes, scores, classes = decode_peaks(head, k, DEFAULT_TOP_K)
            return {"probabilities": heat, "boxes": boxes, "scores": scores, "classes": classes}

        return outputs

    def verification_data(self, data, split: str, limit: int | None = None):
        """Pixels and the targets: ``{"truths": [(boxes [m, 4], classes [m]) per image],
        "scale": [h, w, h, w]}``, boxes in model-input pixels (``scale`` maps fractions to them)."""
        import numpy as np

        boxes = box_data(data)
        h, w = boxes.input_shape[:2]
        scale = np.array([h, w, h, w], np.float32)
        images, truths = [], []
        for image, target in boxes.dataset(split, training=False, batch=False):
            classes = target["classes"].numpy()
            valid = classes >= 0
            images.append(np.asarray(image))
            truths.append((target["boxes"].numpy()[valid] * scale, classes[valid]))
            if limit is not None and len(images) >= limit:
                break
        targets = {"truths": truths, "scale": scale}
        if not images:
            return np.zeros((0, *boxes.input_shape), np.uint8), targets
        return np.clip(np.round(np.stack(images)), 0, 255).astype(np.uint8), targets

    def reference_outputs(self, model, contract: dict):
        """The Keras decoding model's detections (combined NMS in the graph) and heatmap."""
        import numpy as np
        import tensorflow as tf

        from kerasflow.models.detector import CenterNetDecode

        k = self.num_classes(model)
        decode = CenterNetDecode(k, **contract.get("decode", DECODE))

        @tf.function(reduce_retracing=True)
        def run(x):
            head = model(tf.cast(x, tf.float32), training=False)
            out = decode(head)
            return {**out, "probabilities": tf.sigmoid(tf.cast(head, tf.float32)[..., :k])}

        return lambda x: {name: np.asarray(v) for name, v in run(x).items()}

    def artefact_answers(self, outputs: dict, contract: dict) -> dict:
        from kerasflow.tasks.predictions import padded_detections

        return {**padded_detections(outputs, contract), "probabilities": outputs["probabilities"]}

    def verification_score(self, targets, answers: dict, contract: dict) -> float:
        """mAP@0.5 of the detections against the true boxes (model-input pixels)."""
        from kerasflow.tasks.detection.average_precision import mean_average_precision

        dets = _detections(answers, targets["scale"])
        report = mean_average_precision(dets, targets["truths"], len(contract["class_names"]))
        return float(report[self.headline])

    def verification_agreement(self, answers: dict, reference: dict, contract: dict) -> dict:
        """``top1_agreement``: the share of images whose best detection agrees with Keras'
        (the same class at IoU >= 0.5, or neither finds a box); ``max_prob_diff``: the
        largest heatmap probability difference.

        Detections tied at the artefact's best score all count as its best: a quantised
        heatmap gives every confident peak the same top value, and their order is arbitrary.
        """
        import numpy as np

        from kerasflow.tasks.predictions import pairwise_iou

        same = []
        # IoU of fractions: the same as of pixels (a per-axis scale cancels out).
        for mine, keras_ in zip(_detections(answers), _detections(reference), strict=True):
            if len(mine[1]) == 0 or len(keras_[1]) == 0:
                same.append(len(mine[1]) == len(keras_[1]))
                continue
            best = int(np.argmax(keras_[1]))
            tied = mine[1] >= mine[1].max()
            iou = pairwise_iou(keras_[0][best : best + 1], mine[0][tied])[0]
            same.append(bool(np.any((mine[2][tied] == keras_[2][best]) & (iou >= 0.5))))
        diff = np.abs(answers["probabilities"] - reference["probabilities"]).max()
        return {"top1_agreement": float(np.mean(same)), "max_prob_diff": float(diff)}


def _detections(answers: dict, scale=1.0) -> list:
    """Padded ``boxes``/``scores``/``classes`` -> per image ``(boxes * scale, scores,
    classes)`` of the valid rows (``scale`` ``[h, w, h, w]``: model-input pixels)."""
    import numpy as np

    out = []
    for boxes, scores, classes in zip(
        answers["boxes"], answers["scores"], answers["classes"], strict=True
    ):
        valid = np.asarray(classes) >= 0
        out.append((np.asarray(boxes)[valid] * scale, np.asarray(scores)[valid], classes[valid]))
    return out
