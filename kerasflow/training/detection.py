"""Detection training: CenterNet targets and losses, the fit loop, mAP evaluation, box grids.

Targets (:func:`make_targets_fn`): for an output map of ``h x w`` cells and
``K`` classes, a ``(h, w, K + 5)`` float32 tensor: ``K`` heatmaps with a
Gaussian at each object's centre cell (peak exactly 1, radius from the box
size as in CenterNet), then ``[offset_y, offset_x, height, width]`` in cells at
the centre cells, then a 0/1 centre mask.

Loss (:class:`CenterNetLoss`): the penalty-reduced focal loss of CenterNet on
the heatmaps (focal loss with ``alpha=2`` on classes, negatives near a centre
down-weighted by ``(1 - y)^beta``), plus an L1 loss on offsets and sizes, or
GIoU on the decoded centre box (``box_loss: giou``); every term is divided by
the number of objects in the batch.

:func:`train_detection` is what :func:`kerasflow.training.fit.train` runs for
``experiment.task: detection``; it reuses fit's run state, callbacks, tracker
and registry, monitors ``val_map50`` (computed every epoch by
:class:`MapCallback`) and logs a test report with per-class APs and a grid of
test images with predicted and true boxes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasflow.errors import ConfigError
from kerasflow.training.map import mean_average_precision

log = logging.getLogger(__name__)

DETECTION_LOSSES = ("centernet",)


# --------------------------------------------------------------------------- targets
def gaussian_radius(height, width, min_overlap: float = 0.7):
    """CenterNet's radius (in cells) of an object's heatmap Gaussian.

    The reference implementation's formula, kept as is (``(b + sqrt(...)) / 2`` in the
    first two cases), so that targets match published CenterNet training.
    """
    h, w, m = height, width, min_overlap
    b1 = h + w
    c1 = w * h * (1 - m) / (1 + m)
    r1 = (b1 + tf.sqrt(tf.maximum(b1**2 - 4 * c1, 0.0))) / 2
    b2 = 2 * (h + w)
    c2 = (1 - m) * w * h
    r2 = (b2 + tf.sqrt(tf.maximum(b2**2 - 16 * c2, 0.0))) / 2
    a3 = 4 * m
    b3 = -2 * m * (h + w)
    c3 = (m - 1) * w * h
    r3 = (b3 + tf.sqrt(tf.maximum(b3**2 - 4 * a3 * c3, 0.0))) / 2
    return tf.maximum(tf.floor(tf.minimum(tf.minimum(r1, r2), r3)), 0.0)


def make_targets_fn(num_classes: int, out_hw, min_overlap: float = 0.7):
    """A function ``(boxes [M, 4], classes [M]) -> (h, w, K + 5)`` dense CenterNet targets.

    Padding rows (class ``-1``) and empty boxes are ignored.
    """
    out_h, out_w = int(out_hw[0]), int(out_hw[1])
    k = int(num_classes)

    def targets(boxes, classes):
        keep = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(tf.cast(boxes, tf.float32), keep)
        classes = tf.boolean_mask(classes, keep)
        scale = tf.constant([out_h, out_w, out_h, out_w], tf.float32)
        cells = boxes * scale
        h = cells[:, 2] - cells[:, 0]
        w = cells[:, 3] - cells[:, 1]
        cy = (cells[:, 0] + cells[:, 2]) / 2
        cx = (cells[:, 1] + cells[:, 3]) / 2
        iy = tf.clip_by_value(tf.floor(cy), 0, out_h - 1)
        ix = tf.clip_by_value(tf.floor(cx), 0, out_w - 1)
        sigma = (2 * gaussian_radius(h, w, min_overlap) + 1) / 6
        ys = tf.range(out_h, dtype=tf.float32)
        xs = tf.range(out_w, dtype=tf.float32)
        dy = (ys[None, :] - iy[:, None]) ** 2  # [n, h]
        dx = (xs[None, :] - ix[:, None]) ** 2  # [n, w]
        two_s2 = (2 * sigma**2)[:, None, None]
        gauss = tf.exp(-(dy[:, :, None] + dx[:, None, :]) / two_s2)  # [n, h, w]
        onehot = tf.one_hot(classes, k)  # [n, k]
        per_box = gauss[..., None] * onehot[:, None, None, :]
        # A zero map first: the max over no boxes (all cropped away) is 0, not -inf.
        heat = tf.reduce_max(tf.concat([tf.zeros([1, out_h, out_w, k]), per_box], 0), axis=0)
        index = tf.cast(tf.stack([iy, ix], -1), tf.int32)
        values = tf.stack([cy - iy, cx - ix, h, w, tf.ones_like(h)], -1)
        reg = tf.scatter_nd(index, values, [out_h, out_w, 5])
        # scatter_nd adds duplicates: two objects on one cell keep the mean of their values.
        count = tf.maximum(reg[..., 4:5], 1.0)
        reg = tf.concat([reg[..., :4] / count, tf.minimum(reg[..., 4:5], 1.0)], -1)
        out = tf.concat([heat, reg], -1)
        out.set_shape([out_h, out_w, k + 5])
        return out

    return targets


# --------------------------------------------------------------------------- losses
def heatmap_focal_loss(target, logits, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss, summed (divide by the number of objects).

    Positives are cells whose target is 1; a negative near a centre (target
    ``y < 1``) is down-weighted by ``(1 - y)^beta``. Probabilities are clamped
    to ``[1e-4, 1 - 1e-4]``.
    """
    target = tf.cast(target, tf.float32)
    # Clamped as in CenterNet: each cell's loss stays below -log(1e-4), so one
    # confident mistake early in training cannot overflow the sum.
    p = tf.clip_by_value(tf.sigmoid(tf.cast(logits, tf.float32)), 1e-4, 1 - 1e-4)
    pos = tf.cast(target >= 1.0 - 1e-6, tf.float32)
    pos_loss = -tf.math.log(p) * (1 - p) ** alpha * pos
    neg_loss = -tf.math.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - pos)
    return tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)


def giou(a, b):
    """Generalized IoU of paired ``[..., 4]`` ``[ymin, xmin, ymax, xmax]`` boxes."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)

    def area(x):
        return tf.maximum(x[..., 2] - x[..., 0], 0.0) * tf.maximum(x[..., 3] - x[..., 1], 0.0)

    inter_h = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    inter_w = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = inter_h * inter_w
    union = area(a) + area(b) - inter
    iou = tf.math.divide_no_nan(inter, union)
    hull_h = tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0])
    hull_w = tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])
    hull = hull_h * hull_w
    return iou - tf.math.divide_no_nan(hull - union, hull)


def _centre_box(reg):
    """``[offset_y, offset_x, h, w]`` -> a box around the offset (relative to the cell)."""
    h = tf.maximum(reg[..., 2], 0.0) / 2
    w = tf.maximum(reg[..., 3], 0.0) / 2
    return tf.stack([reg[..., 0] - h, reg[..., 1] - w, reg[..., 0] + h, reg[..., 1] + w], -1)


def loss_terms(y_true, y_pred, num_classes: int, box_loss: str = "l1"):
    """``(heatmap, offset, size_or_giou)`` losses, each divided by the number of objects."""
    k = num_classes
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    mask = y_true[..., k + 4]
    num = tf.maximum(tf.reduce_sum(mask), 1.0)
    heat = heatmap_focal_loss(y_true[..., :k], y_pred[..., :k]) / num
    t_reg, p_reg = y_true[..., k : k + 4], y_pred[..., k : k + 4]
    offset = tf.reduce_sum(tf.abs(p_reg[..., :2] - t_reg[..., :2]) * mask[..., None]) / num
    if box_loss == "giou":
        box = tf.reduce_sum((1.0 - giou(_centre_box(p_reg), _centre_box(t_reg))) * mask) / num
    else:
        box = tf.reduce_sum(tf.abs(p_reg[..., 2:] - t_reg[..., 2:]) * mask[..., None]) / num
    return heat, offset, box


@keras.saving.register_keras_serializable(package="kerasflow")
class CenterNetLoss(keras.losses.Loss):
    """Heatmap focal loss + ``offset_weight`` x L1 offsets + ``box_weight`` x box loss.

    Args:
        num_classes: ``K``; ``y_true`` is ``(N, h, w, K + 5)``, ``y_pred`` ``(N, h, w, K + 4)``.
        box_loss: ``l1`` on sizes in cells (CenterNet; default weight 0.1) or
            ``giou`` on the centre box (default weight 1).
        offset_weight: weight of the L1 offset term.
        box_weight: weight of the box term (default by ``box_loss``).
    """

    def __init__(
        self,
        num_classes: int,
        box_loss: str = "l1",
        offset_weight: float = 1.0,
        box_weight: float | None = None,
        name: str = "centernet_loss",
        **kwargs,
    ):
        if box_loss not in ("l1", "giou"):
            raise ValueError(f"box_loss must be 'l1' or 'giou'. Received: box_loss={box_loss!r}")
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.box_loss = box_loss
        self.offset_weight = float(offset_weight)
        self.box_weight = float(
            box_weight if box_weight is not None else (0.1 if box_loss == "l1" else 1.0)
        )

    def call(self, y_true, y_pred):
        heat, offset, box = loss_terms(y_true, y_pred, self.num_classes, self.box_loss)
        return heat + self.offset_weight * offset + self.box_weight * box

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            box_loss=self.box_loss,
            offset_weight=self.offset_weight,
            box_weight=self.box_weight,
        )
        return config


TERMS = ("heatmap", "offset", "box")


def _term_value(y_true, y_pred, index: int, num_classes: int, box_loss: str):
    return loss_terms(y_true, y_pred, num_classes, box_loss)[index]


@keras.saving.register_keras_serializable(package="kerasflow")
class CenterNetTerm(keras.metrics.MeanMetricWrapper):
    """One term of :class:`CenterNetLoss` as a metric (``heatmap``, ``offset`` or ``box``)."""

    def __init__(self, term: str, num_classes: int, box_loss: str = "l1", name=None, dtype=None):
        if term not in TERMS:
            raise ValueError(f"term must be one of {TERMS}. Received: term={term!r}")
        self.term, self.num_classes, self.box_loss = term, int(num_classes), box_loss
        default = f"box_{box_loss}_loss" if term == "box" else f"{term}_loss"
        super().__init__(
            _term_value,
            name=name or default,
            dtype=dtype,
            index=TERMS.index(term),
            num_classes=self.num_classes,
            box_loss=box_loss,
        )

    def get_config(self):
        return {
            "term": self.term,
            "num_classes": self.num_classes,
            "box_loss": self.box_loss,
            "name": self.name,
            "dtype": self.dtype,
        }


def _term_metrics(num_classes: int, box_loss: str) -> list:
    return [CenterNetTerm(t, num_classes, box_loss) for t in TERMS]


def build_detection_loss(compile_config, num_classes: int) -> CenterNetLoss:
    """The detection loss of ``compile.loss`` (name ``centernet``; its params go to it)."""
    loss = compile_config.loss
    if loss.name not in DETECTION_LOSSES and loss.name != "sparse_categorical_crossentropy":
        raise ConfigError(
            f"compile.loss.name {loss.name!r} is not a detection loss. Use one of: "
            f"{', '.join(DETECTION_LOSSES)}. Received: {loss.name!r}"
        )
    try:
        return CenterNetLoss(num_classes, **loss.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Bad compile.loss.params for centernet: {exc} Received: {loss.params}"
        ) from exc


def compile_detector(model, compile_config, num_classes: int, steps_per_epoch: int, epochs: int):
    """Compile a detector: the config's optimizer and schedule, the CenterNet loss and its terms."""
    from kerasflow.training.compile import build_optimizer

    loss = build_detection_loss(compile_config, num_classes)
    model.compile(
        optimizer=build_optimizer(compile_config, steps_per_epoch, epochs),
        loss=loss,
        metrics=_term_metrics(num_classes, loss.box_loss),
    )
    return model


# --------------------------------------------------------------------------- evaluation
def detector_fn(model, **decode_kwargs):
    """A compiled function ``images -> detections`` of a detector (heads or decoded model)."""
    from kerasflow.models.detector import inference_model

    decoded = isinstance(model.outputs[0], dict) or len(model.outputs) > 1
    detect = model if decoded else inference_model(model, **decode_kwargs)
    return tf.function(lambda x: detect(x, training=False), reduce_retracing=True)


def predict_split(
    model, prepared, split: str, limit: int | None = None, detect=None, **decode_kwargs
):
    """Run the decoded detector over a split.

    Returns ``(images, detections, ground_truths)``: images as 0..1 floats
    (kept only up to ``limit``; all when None), and per image
    ``(boxes, scores, classes)`` / ``(boxes, classes)`` in pixels of the model input.
    ``detect`` reuses a :func:`detector_fn` across calls.
    """
    from kerasflow.pipelines.transforms import to_display

    detect = detect or detector_fn(model, **decode_kwargs)
    h, w = prepared.input_shape[:2]
    scale = np.array([h, w, h, w], np.float32)
    images, dets, gts = [], [], []
    for x, target in prepared.dataset(split, training=False):
        out = detect(x)
        num = out["num_detections"].numpy()
        for i in range(len(num)):
            n = int(num[i])
            dets.append(
                (
                    out["boxes"].numpy()[i, :n] * scale,
                    out["scores"].numpy()[i, :n],
                    out["classes"].numpy()[i, :n],
                )
            )
            valid = target["classes"].numpy()[i] >= 0
            gts.append(
                (target["boxes"].numpy()[i][valid] * scale, target["classes"].numpy()[i][valid])
            )
            if limit is None or len(images) < limit:
                images.append(to_display(x[i]).numpy())
    return images, dets, gts


def evaluate_detection(
    model, prepared, split: str = "test", grid_path=None, grid_images: int = 16
) -> dict:
    """mAP report of a split (and a grid of its images with boxes, when ``grid_path`` is set)."""
    images, dets, gts = predict_split(model, prepared, split, limit=grid_images)
    report = mean_average_precision(
        dets, gts, prepared.num_classes, class_names=prepared.class_names
    )
    report["split"], report["task"] = split, "detection"
    report["num_images"] = report["num_examples"] = len(dets)
    if grid_path is not None and images:
        prediction_grid_png(images, dets, gts, prepared.class_names, grid_path)
    return report


def scalar_metrics(report: dict, prefix: str = "test_") -> dict[str, float]:
    """Flat MLflow metrics of an mAP report (``test_map50``, ``test_ap50_circle``, ...)."""
    out = {f"{prefix}{k}": float(report[k]) for k in ("map", "map50", "map75") if k in report}
    for name, values in report.get("per_class", {}).items():
        safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in str(name))
        for key in ("ap", "ap50"):
            out[f"{prefix}{key}_{safe}"] = float(values[key])
    return {k: v for k, v in out.items() if np.isfinite(v)}


PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]  # fmt: skip


def draw_boxes(image01: np.ndarray, detections, ground_truth, class_names, min_score: float = 0.3):
    """An RGB uint8 image with true boxes (white, thin) and predictions (class colour, label)."""
    from PIL import Image, ImageDraw

    pixels = (np.clip(image01, 0, 1) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    for y0, x0, y1, x1 in np.asarray(ground_truth[0]).reshape(-1, 4):
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255))
    boxes, scores, classes = detections
    for (y0, x0, y1, x1), s, c in zip(
        np.asarray(boxes).reshape(-1, 4), scores, classes, strict=True
    ):
        if s < min_score:
            continue
        color = PALETTE[int(c) % len(PALETTE)]
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=2)
        draw.text((x0 + 2, y0 + 1), f"{class_names[int(c)]} {s:.2f}", fill=color)
    return np.asarray(canvas)


def prediction_grid_png(
    images, detections, ground_truths, class_names, path, columns: int = 4
) -> Path:
    """Write a grid of images with their predicted and true boxes."""
    from PIL import Image

    tiles = [
        draw_boxes(img, det, gt, class_names)
        for img, det, gt in zip(images, detections, ground_truths, strict=False)
    ]
    h, w = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    grid = np.zeros((rows * (h + 2), min(columns, len(tiles)) * (w + 2), 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


class MapCallback(keras.callbacks.Callback):
    """Adds ``val_map50`` and ``val_map`` to each epoch's logs (before tracking and checkpoints)."""

    def __init__(self, prepared, split: str = "validation"):
        super().__init__()
        self.prepared = prepared
        self.split = split
        self._detect = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self._detect is None:
            self._detect = detector_fn(self.model)
        _, dets, gts = predict_split(self.model, self.prepared, self.split, 0, self._detect)
        report = mean_average_precision(dets, gts, self.prepared.num_classes)
        prefix = "val_" if self.split == "validation" else f"{self.split}_"
        logs[f"{prefix}map50"] = float(np.nan_to_num(report["map50"]))
        logs[f"{prefix}map"] = float(np.nan_to_num(report["map"]))


# --------------------------------------------------------------------------- generic loops
class DetectionTrainingData:
    """Detection data whose ``dataset()`` yields the model's dense targets.

    What generic loops that call ``prepared.dataset(split)`` and ``model.fit``
    (the tuner) train on; everything else is the wrapped
    :class:`~kerasflow.pipelines.detection.DetectionData`.
    """

    def __init__(self, data, targets_fn):
        self.data = data
        self.targets_fn = targets_fn

    def dataset(self, split: str, training: bool | None = None, batch: bool = True):
        return self.data.dataset(split, training, batch, targets_fn=self.targets_fn)

    def __getattr__(self, name):
        return getattr(self.data, name)


def output_hw(cfg, input_shape) -> tuple[int, int]:
    """The detector's output map size for the config (input / ``output_stride``)."""
    from kerasflow import models

    params = {**models.get_spec(cfg.model.name).defaults, **cfg.model.params}
    stride = int(params.get("output_stride", 4))
    return input_shape[0] // stride, input_shape[1] // stride


def prepare_training_data(cfg) -> DetectionTrainingData:
    """Load the config's detection data with its targets bound (for the tuner)."""
    from kerasflow.pipelines.detection import prepare_detection

    data = prepare_detection(cfg.data, cfg.experiment.seed)
    return DetectionTrainingData(
        data, make_targets_fn(data.num_classes, output_hw(cfg, data.input_shape))
    )


def build_compiled_detector(cfg, prepared, compile_config=None):
    """A fresh detector of ``cfg``, compiled from ``compile_config`` (default ``cfg.compile``)."""
    from kerasflow.training.compile import steps_per_epoch

    model, _ = build_detector(cfg, prepared)
    return compile_detector(
        model,
        compile_config or cfg.compile,
        prepared.num_classes,
        steps_per_epoch(cfg, prepared),
        cfg.train.epochs,
    )


def evaluate_split_report(
    model, prepared, split: str = "test", out_dir=None, run_id: str | None = None
) -> dict:
    """:func:`kerasflow.training.evaluate.evaluate_split` for detection.

    With ``out_dir``: ``evaluation_<split>.json`` (the mAP report),
    ``predictions_<split>.png`` (the box grid) and ``report_<split>.html``.
    """
    from kerasflow.training.evaluate import write_report_files

    data = getattr(prepared, "data", prepared)
    grid = Path(out_dir) / f"predictions_{split}.png" if out_dir is not None else None
    report = evaluate_detection(model, data, split, grid_path=grid)
    if out_dir is not None:
        write_report_files(report, out_dir, split, run_id)
    return report


# --------------------------------------------------------------------------- training
def detection_monitor(name: str, has_val: bool) -> tuple[str, str | None]:
    """The monitored metric and its forced mode (``max`` for mAP)."""
    if name in ("val_accuracy", "accuracy"):
        name = "val_map50"  # the config default is a classification metric
    if not has_val:
        name = f"train_{name[4:]}" if name.startswith("val_map") else name.removeprefix("val_")
    return name, ("max" if "map" in name else None)


def build_detector(cfg, prepared):
    """The config's detector for the prepared data, with its target function."""
    from kerasflow import models

    # The pipeline hands over uint8 pixels; the backbone's first layer applies data.normalize.
    model = models.build(
        cfg.model.name,
        prepared.input_shape,
        prepared.num_classes,
        input_scaling=cfg.data,
        **cfg.model.params,
    )
    if models.get_spec(cfg.model.name).task != "detection":
        raise ConfigError(
            f"model.name {cfg.model.name!r} is not a detection model. Choose one of: "
            f"{', '.join(models.names('detection'))}."
        )
    out_hw = model.outputs[0].shape[1:3]
    return model, make_targets_fn(prepared.num_classes, out_hw)


def train_detection(cfg, prepared, tracker, state, work: Path):
    """The detection branch of :func:`kerasflow.training.fit.train` (same run state and tracking)."""
    from kerasflow.training import fit, plots
    from kerasflow.training.evaluate import write_report_files

    model = build_compiled_detector(cfg, prepared)
    targets_fn = make_targets_fn(prepared.num_classes, model.outputs[0].shape[1:3])
    out = work / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    if not tracker.resumed:
        fit.log_run_inputs(cfg, prepared, model, tracker, target="boxes")

    has_val = prepared.size("validation") > 0
    eval_split = "validation" if has_val else "train"
    callbacks, best_path, ck_monitor, initial_epoch = fit.build_callbacks(
        cfg, tracker, state, work, has_val, extra=fit.epoch_metric_callbacks(cfg, prepared, has_val)
    )

    train_ds = prepared.dataset("train", targets_fn=targets_fn)
    val_ds = (
        prepared.dataset("validation", training=False, targets_fn=targets_fn) if has_val else None
    )
    fit_history = fit.fit_model(model, cfg, prepared, train_ds, val_ds, callbacks)
    fit.restore_best(model, best_path, ck_monitor)
    history = fit._history(tracker, fit_history, initial_epoch)
    plots.training_curves_png(history, out / "training_curves.png")
    test_split = "test" if prepared.size("test") else eval_split
    report = evaluate_detection(model, prepared, test_split, grid_path=out / "predictions_test.png")
    test_ds = prepared.dataset(test_split, training=False, targets_fn=targets_fn)
    report["loss"] = float(model.evaluate(test_ds, verbose=0, return_dict=True)["loss"])
    write_report_files(report, out, "test", tracker.run_id)  # the JSON and the HTML page
    test_metrics = {**scalar_metrics(report), "test_loss": report["loss"]}
    example = next(iter(prepared.dataset(test_split, training=False)))[0].numpy()[:2]
    return fit.finish_run(
        cfg,
        model,
        prepared.class_names,
        report,
        test_metrics,
        history,
        example,
        tracker,
        work,
        initial_epoch,
    )
