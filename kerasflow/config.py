"""The run config: one YAML file, validated by pydantic, with clear errors.

Sections: ``experiment``, ``data``, ``model``, ``compile``, ``train``,
``tracking``, ``evaluate`` (and ``tune``, ``export`` where those features use them). Every
field has a default, so an empty file is a valid config (the digits demo).

Example:
    >>> from kerasflow.config import load_config
    >>> cfg = load_config(None, ["train.epochs=3", "model.params.width=16"])
    >>> cfg.train.epochs
    3
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kerasflow.errors import ConfigError

DEFAULT_CONFIG = "digits.yaml"

log = logging.getLogger(__name__)


def plain_name(value: str | None) -> str | None:
    """A name that becomes a folder or file name: no path separator, no ``..``, not empty."""
    if value is None:
        return value
    if not value.strip() or any(c in value for c in "/\\\0") or ".." in value or value == ".":
        raise ValueError(
            "it becomes a folder name (under runs/ and mlruns/artifacts/), so it must be a "
            "plain name: not empty, no '/', '\\' or '..'"
        )
    return value


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values re-validated on set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# ---------------------------------------------------------------- experiment
class ExperimentConfig(Section):
    name: str = Field(
        default="digits",
        description="the experiment's name: the default MLflow experiment, registered model and work_dir subfolder",
    )
    task: Literal["classification", "multilabel", "segmentation", "detection"] = Field(
        default="classification",
        description="what the model predicts: one class per image (classification), any number "
        "of labels per image (multilabel), a class per pixel (segmentation) or boxes (detection); "
        "it decides every `auto` default (loss, metrics, monitors, champion metric)",
    )
    seed: int = Field(
        default=42,
        description="seed of every random choice: splits, shuffling, augmentation, initial weights",
    )
    deterministic: bool = Field(
        default=False, description="Enable TensorFlow op determinism (slower, bit-exact reruns)."
    )
    work_dir: str = Field(
        default="runs", description="Checkpoints and resume state live under work_dir/<name>/."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="extra MLflow tags set on every run of this config"
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value):
        return plain_name(value)


# ---------------------------------------------------------------------- data
class SplitConfig(Section):
    """How examples are divided into train/validation/test.

    ``mode: fractions`` assigns each example by a hash of its key (the path
    relative to the source), so adding files never moves an existing file to
    another split. ``stratify: true`` instead ranks the hashes inside each
    class for exact per-class shares; a new file may then shift one neighbour
    at a class's boundary. ``mode: source`` uses the source's own splits
    (TFDS, or a folder of ``train/``, ``val/``, ``test/`` class folders),
    named by ``source_names``; a missing validation split is carved from train
    by the ``validation`` fraction. ``auto`` is ``source`` where the source has
    splits and ``fractions`` otherwise.
    """

    train: float = Field(
        default=0.7, description="share of the examples in the training split (mode: fractions)"
    )
    validation: float = Field(
        default=0.1,
        description="share in the validation split; with mode: source, the share carved from train when the source has no validation split",
    )
    test: float = Field(default=0.2, description="share in the test split (mode: fractions)")
    stratify: bool = Field(
        default=False,
        description="rank each class's hashes for exact per-class shares (else each example is placed by its own hash)",
    )
    mode: Literal["auto", "fractions", "source"] = Field(
        default="auto",
        description="auto: the source's own splits where it has them, else fractions; fractions: by hashed key; source: the source's splits",
    )
    source_names: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"},
        description="kerasflow split -> the source's split name (TFDS slicing allowed)",
    )

    @model_validator(mode="after")
    def _fractions_sum_to_one(self):
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6 or min(self.train, self.validation, self.test) < 0:
            raise ValueError(
                "split fractions must be >= 0 and sum to 1. "
                f"Received: train={self.train}, validation={self.validation}, test={self.test}"
            )
        unknown = set(self.source_names) - {"train", "validation", "test"}
        if unknown:
            raise ValueError(
                f"source_names keys must be train, validation, test. Received: {sorted(unknown)}"
            )
        return self


class RandomResizedCropConfig(Section):
    """Random crop of ``scale`` of the area and ``ratio`` aspect, resized to image_size."""

    scale: tuple[float, float] = Field(
        default=(0.08, 1.0), description="range of the crop's area as a fraction of the image"
    )
    ratio: tuple[float, float] = Field(
        default=(3.0 / 4.0, 4.0 / 3.0),
        description="range of the crop's aspect ratio (width / height)",
    )

    @model_validator(mode="after")
    def _ordered(self):
        if not (0 < self.scale[0] <= self.scale[1] <= 1) or not (
            0 < self.ratio[0] <= self.ratio[1]
        ):
            raise ValueError(
                "random_resized_crop needs 0 < scale[0] <= scale[1] <= 1 and "
                f"0 < ratio[0] <= ratio[1]. Received: scale={self.scale}, ratio={self.ratio}"
            )
        return self


class RandAugmentConfig(Section):
    """RandAugment: ``num_ops`` random ops per image at ``magnitude`` (0..10)."""

    num_ops: int = Field(default=2, ge=1, le=6, description="random ops applied to each image")
    magnitude: float = Field(
        default=9.0, ge=0.0, le=10.0, description="strength of every op, 0 (none) to 10 (strongest)"
    )


AUGMENT_OPS = (
    "random_resized_crop",
    "horizontal_flip",
    "vertical_flip",
    "rotation",
    "zoom",
    "translation",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "randaugment",
    "random_erasing",
    "mixup",
    "cutmix",
)


class AugmentConfig(Section):
    """Random augmentation applied to the training split only.

    Element-level ops run in the order their keys appear in the config (kept
    in ``order``); ``random_resized_crop`` always runs first because it
    replaces the resize, and ``mixup``/``cutmix`` run on whole batches.
    """

    horizontal_flip: bool = Field(default=False, description="flip left-right with probability 0.5")
    vertical_flip: bool = Field(default=False, description="flip top-bottom with probability 0.5")
    rotation: float = Field(default=0.0, ge=0.0, le=1.0, description="fraction of a full turn")
    zoom: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="random zoom in or out by up to this fraction"
    )
    translation: float = Field(default=0.0, ge=0.0, lt=1.0, description="fraction of size")
    brightness: float = Field(default=0.0, ge=0.0, le=1.0, description="max delta on 0..1")
    contrast: float = Field(default=0.0, ge=0.0, le=1.0, description="factor in 1 +- contrast")
    saturation: float = Field(default=0.0, ge=0.0, le=1.0, description="factor in 1 +- value")
    hue: float = Field(default=0.0, ge=0.0, le=0.5, description="max hue shift (turns)")
    random_erasing: float = Field(default=0.0, ge=0.0, le=1.0, description="probability")
    random_resized_crop: RandomResizedCropConfig | None = Field(
        default=None,
        description="random crop then resize (replaces the plain resize); true for the defaults, null: off",
    )
    randaugment: RandAugmentConfig | None = Field(
        default=None, description="RandAugment; true for the defaults, null: off"
    )
    mixup: float = Field(default=0.0, ge=0.0, description="Beta(alpha, alpha); 0 is off")
    cutmix: float = Field(default=0.0, ge=0.0, description="Beta(alpha, alpha); 0 is off")
    order: list[str] = Field(
        default_factory=list, description="declared order of the ops (filled from the keys)"
    )

    @model_validator(mode="before")
    @classmethod
    def _record_order(cls, data):
        if isinstance(data, dict):
            data = dict(data)
            for key in ("random_resized_crop", "randaugment"):
                if data.get(key) is True:
                    data[key] = {}
                elif data.get(key) is False:
                    data[key] = None
            declared = [
                k for k in data if k in AUGMENT_OPS and data[k] not in (None, False, 0, 0.0)
            ]
            given = list(data.get("order") or [])
            bad = [k for k in given if k not in AUGMENT_OPS]
            if bad:
                raise ValueError(f"unknown augment op in order: {bad}. Choose from {AUGMENT_OPS}")
            data["order"] = given + [k for k in declared if k not in given]
        return data

    def enabled(self) -> list[str]:
        """Enabled op names: declared ones in declared order, then the rest in field order."""
        names = list(self.order) + [k for k in AUGMENT_OPS if k not in self.order]
        return [k for k in names if getattr(self, k) not in (None, False, 0, 0.0)]


class TfdsConfig(Section):
    """Options of a ``tfds:<name>[:<version>]`` source.

    The label feature decides the targets: a ``ClassLabel`` gives one class per
    image; a ``Sequence(ClassLabel)`` (e.g. VOC's ``labels``) or a fixed
    ``(K,)`` 0/1 tensor gives multi-label targets (``experiment.task: multilabel``).
    """

    data_dir: str | None = Field(
        default=None, description="TFDS data folder (default: TFDS's own, ~/tensorflow_datasets)"
    )
    download: bool = Field(default=False, description="false: use data already prepared")
    image_key: str = Field(default="image", description="the image feature")
    label_key: str = Field(
        default="label",
        description="ClassLabel (one class), Sequence(ClassLabel) or (K,) tensor (multi-label)",
    )
    mask_key: str | None = Field(default=None, description="segmentation mask feature")


class TfrecordConfig(Section):
    """The feature spec of a TFRecord source of encoded images.

    ``label_type`` says what ``label_key`` holds: ``int`` (one int64 class id)
    or ``string`` (one class name) for one class per image; ``int_list`` (any
    number of int64 class ids), ``string_list`` (any number of names) or
    ``multi_hot`` (a fixed-length float or int 0/1 vector of K values) for
    multi-label records (``experiment.task: multilabel``). Class names come from
    ``data.class_names``, else the sorted names found (``string``,
    ``string_list``) or ``"0".."K-1"``.
    """

    image_key: str = Field(
        default="image/encoded", description="feature holding the encoded image bytes (PNG/JPEG)"
    )
    label_key: str = Field(
        default="image/class/label", description="feature holding the label(s), of label_type"
    )
    label_type: Literal["int", "string", "int_list", "string_list", "multi_hot"] = Field(
        default="int",
        description="int | string: one class per image; int_list | string_list | multi_hot: "
        "a set of labels per image (multilabel)",
    )
    mask_key: str | None = Field(default=None, description="encoded PNG mask feature")


class DetectionDataConfig(Section):
    """The ``data.detection`` section: boxes and box-aware augmentation (detection only).

    ``data.source`` names the annotations: a COCO ``.json`` file (images under
    ``data.root``, default its folder), a Pascal VOC folder (``Annotations/``
    and ``JPEGImages/``), ``tfds:<name>`` (``voc``, ``coco/2017``, ...) or
    ``synthetic:shapes_detection``. Boxes are held as ``[ymin, xmin, ymax,
    xmax]`` fractions of the image (see :mod:`kerasflow.pipelines.box_ops`).
    """

    max_boxes: int = Field(default=32, ge=1, description="boxes per image after padding")
    crop_scale: tuple[float, float] | None = Field(
        default=None,
        description="random crop/zoom window side as a fraction of the image "
        "(>1 zooms out); null: off",
    )
    box_policy: Literal["clip", "drop"] = Field(
        default="clip", description="boxes cut by a crop: clip to the image, or drop them"
    )
    min_visible: float = Field(
        default=0.3, gt=0.0, le=1.0, description="clip: keep a cut box if this share remains"
    )
    objects_key: str = Field(default="objects", description="TFDS: the objects feature")
    bbox_key: str = Field(default="bbox", description="TFDS: normalised box feature in objects")
    label_key: str = Field(default="label", description="TFDS: class feature in objects")
    synthetic_images: int = Field(
        default=600, ge=4, description="synthetic:shapes_detection: how many images to draw"
    )

    @model_validator(mode="after")
    def _check_crop(self):
        if self.crop_scale is not None and not (0 < self.crop_scale[0] <= self.crop_scale[1] <= 4):
            raise ValueError(
                f"crop_scale needs 0 < low <= high <= 4. Received: crop_scale={self.crop_scale}"
            )
        return self


class DataConfig(Section):
    """The ``data:`` section: where examples come from and how they are prepared.

    ``source`` is one of: ``digits``; a ``.npz`` file (``images``/``x``,
    ``labels``/``y``, optional ``masks``; 2-D ``(n, K)`` 0/1 labels are
    multi-label); a folder with one subfolder per class; a folder with
    ``images/`` and ``masks/`` (segmentation); a ``.csv`` or ``.jsonl``
    manifest of paths relative to ``root`` with a ``label`` each, or a set of
    ``labels`` (CSV header ``path,labels``, names separated by ``|``; JSONL
    ``"labels": [...]``) for multi-label data; a ``.tfrecord`` file or glob;
    ``tfds:<name>[:<version>]``; or ``synthetic:shapes_segmentation`` /
    ``synthetic:shapes_multilabel`` (generated once under ``root``). Detection
    sources are described in :class:`DetectionDataConfig`.
    """

    source: str = Field(
        default="digits",
        description="digits | a folder | a .npz file | a manifest | a tfrecord glob | "
        "tfds:<name>[:<version>] | synthetic:shapes_segmentation | synthetic:shapes_multilabel "
        "| detection: a COCO .json, a VOC folder, synthetic:shapes_detection",
    )
    root: str | None = Field(
        default=None, description="manifest root (default: its folder); synthetic data folder"
    )
    image_size: tuple[int, int] = Field(
        default=(16, 16), description="[height, width] the pipeline resizes every image to"
    )
    channels: Literal[1, 3] = Field(
        default=1, description="1 (grayscale) or 3 (RGB); images are converted to this"
    )
    resize: Literal["stretch", "pad", "crop"] = Field(
        default="stretch", description="stretch, pad to keep aspect, or crop to aspect"
    )
    interpolation: Literal["bilinear", "bicubic", "area", "nearest"] = Field(
        default="bilinear", description="resize interpolation"
    )
    antialias: bool = Field(default=False, description="anti-alias when shrinking images")
    center_crop: float | None = Field(
        default=None, gt=0.0, le=1.0, description="keep this central fraction before resizing"
    )
    batch_size: int = Field(
        default=64, ge=1, description="examples per batch (global: split across replicas)"
    )
    split: SplitConfig = Field(
        default_factory=SplitConfig,
        description="how examples are divided into train/validation/test",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="random augmentation of the training split"
    )
    normalize: Literal["unit", "symmetric", "imagenet", "mean_std", "none"] = Field(
        default="unit",
        description="how the model's first layer scales the uint8 pixels the pipeline yields",
    )
    mean: list[float] | None = Field(default=None, description="mean_std: per channel, 0..1 scale")
    std: list[float] | None = Field(default=None, description="mean_std: per channel, 0..1 scale")
    cache: bool | str = Field(
        default=True,
        description="true: cache decoded images in memory; a path prefix: cache in files there; false: off",
    )
    shuffle_buffer: int = Field(
        default=2048, ge=0, description="training shuffle buffer, in examples (0: no shuffle)"
    )
    sampling: Literal["natural", "balanced"] = Field(
        default="natural",
        description="balanced: training draws every class equally often (per-class streams, "
        "seeded); natural: each example once per epoch",
    )
    deterministic: bool = Field(
        default=True,
        description="keep tf.data's element order fixed under parallel map (reproducible, a little slower)",
    )
    on_bad_image: Literal["error", "skip"] = Field(
        default="error",
        description="an undecodable or too small image: error names it and stops; skip leaves it out and counts it",
    )
    scan_records: bool = Field(
        default=True,
        description="decode every TFRecord/TFDS record once before training, so a bad one is "
        "named (error) or listed (skip); false saves that pass on very large sets: a bad record "
        "then stops training with TensorFlow's own error, or is dropped unnamed under skip",
    )
    min_image_side: int = Field(default=1, ge=1, description="smaller images are an error")
    class_names: list[str] | None = Field(
        default=None,
        description="class names in label order (default: the sorted folder names, or the source's)",
    )
    tfds: TfdsConfig = Field(
        default_factory=TfdsConfig, description="options of a tfds:<name> source"
    )
    tfrecord: TfrecordConfig = Field(
        default_factory=TfrecordConfig, description="feature spec of a .tfrecord source"
    )
    detection: DetectionDataConfig = Field(
        default_factory=DetectionDataConfig,
        description="boxes and box-aware augmentation (detection only)",
    )

    @model_validator(mode="after")
    def _check_normalize(self):
        if self.normalize == "mean_std":
            for name in ("mean", "std"):
                value = getattr(self, name)
                if value is None or len(value) != self.channels:
                    raise ValueError(
                        f"normalize: mean_std needs {name} with one value per channel "
                        f"({self.channels}). Received: {name}={value}"
                    )
            if min(self.std) <= 0:
                raise ValueError(f"std values must be > 0. Received: std={self.std}")
        if min(self.image_size) < 1:
            raise ValueError(f"image_size must be positive. Received: {self.image_size}")
        return self

    def preprocessing(self) -> dict[str, Any]:
        """What a model trained on this data expects of an image (part of its contract).

        The model takes pixels 0..255 (or, in its serving signatures, encoded
        images) and applies these steps itself, in this order: decode to
        ``channels``, resize to ``image_size`` by ``resize``/``interpolation``,
        then ``normalize``.
        """
        return {
            "image_size": list(self.image_size),
            "channels": int(self.channels),
            "pixels": "0..255",
            "resize": self.resize,
            "interpolation": self.interpolation,
            "antialias": self.antialias,
            "center_crop": self.center_crop,
            "normalize": self.normalize,
            "mean": self.mean,
            "std": self.std,
        }


# --------------------------------------------------------------------- model
class ModelConfig(Section):
    name: str = Field(
        default="simple_cnn",
        description="a registered model (`kerasflow models list`) of the task's kind",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the model's builder (e.g. width, depth, dropout)",
    )
    pretrained: str | None = Field(
        default=None,
        description="start from these weights, copied layer by layer by name and shape: a "
        ".keras / .weights.h5 / .h5 file, an MLflow model URI (models:/NAME@alias, "
        "models:/NAME/VERSION, runs:/RUN_ID/model) of a kerasflow model, or imagenet "
        "(keras_app); see docs/transfer.md",
    )

    @field_validator("pretrained")
    @classmethod
    def _pretrained_source(cls, value: str | None) -> str | None:
        if value is None or value == "imagenet" or value.startswith(("models:/", "runs:/")):
            return value
        if not value.endswith((".keras", ".h5", ".hdf5")):
            raise ValueError(
                "pretrained must be imagenet, an MLflow model URI (models:/NAME@alias, "
                "models:/NAME/VERSION, runs:/RUN_ID/model) or a .keras / .weights.h5 / .h5 "
                f"file. Received: {value!r}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _known_model(cls, value: str) -> str:
        from kerasflow.models import names

        if value not in names():
            close = difflib.get_close_matches(value, names(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown model {value!r}.{hint} Choose one of: {', '.join(names())}")
        return value


# ------------------------------------------------------------------- compile
class OptimizerConfig(Section):
    name: Literal["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"] = Field(
        default="adam", description="the optimizer; momentum and nesterov are SGD with momentum"
    )
    learning_rate: float = Field(
        default=1e-3, gt=0, description="peak learning rate (the schedule scales it)"
    )
    momentum: float = Field(
        default=0.9, ge=0, lt=1, description="momentum of momentum, nesterov and rmsprop"
    )
    weight_decay: float = Field(
        default=0.0, ge=0, description="decoupled weight decay (adamw, sgd); 0: off"
    )
    clipnorm: float | None = Field(
        default=None, gt=0, description="clip each gradient to this norm; null: off"
    )
    clipvalue: float | None = Field(
        default=None, gt=0, description="clip each gradient value to +- this; null: off"
    )
    ema: bool = Field(
        default=False,
        description="keep an exponential moving average of the weights; validation, the best "
        "checkpoint, the test report and the registered model use the averaged weights",
    )
    ema_momentum: float = Field(
        default=0.99, ge=0, lt=1, description="momentum of the weights' moving average (ema)"
    )


class ScheduleConfig(Section):
    name: Literal["constant", "cosine", "step", "exponential", "one_cycle"] = Field(
        default="constant", description="the learning-rate schedule over the training steps"
    )
    warmup_epochs: float = Field(
        default=0.0, ge=0, description="linear warm-up from 0 over this many epochs"
    )
    decay_rate: float = Field(default=0.1, gt=0, description="step/exponential factor")
    step_epochs: list[float] = Field(
        default_factory=list, description="step: epochs at which lr *= decay_rate"
    )
    decay_epochs: float = Field(default=1.0, gt=0, description="exponential: epochs per decay")
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1, description="cosine floor")


class LossConfig(Section):
    name: str = Field(
        default="auto",
        description="auto: the task's loss (sparse categorical cross-entropy, binary "
        "cross-entropy for multilabel, CenterNet for detection); or a name the task accepts",
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=1, description="label smoothing of cross-entropy losses (0: off)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the loss"
    )


class CompileConfig(Section):
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig,
        description="the optimizer (a name is shorthand for {name: ...})",
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig,
        description="the learning-rate schedule (a name is shorthand)",
    )
    loss: LossConfig = Field(
        default_factory=LossConfig, description="the loss (a name is shorthand)"
    )
    metrics: list[str] | Literal["auto"] = Field(
        default="auto",
        description="auto: the task's metrics; or a list of names the task accepts",
    )

    @field_validator("optimizer", "loss", "schedule", mode="before")
    @classmethod
    def _name_shorthand(cls, value):
        # `optimizer: adam` is accepted as `optimizer: {name: adam}`.
        return {"name": value} if isinstance(value, str) else value


# --------------------------------------------------------------------- train
class MonitorConfig(Section):
    monitor: str = Field(
        default="auto",
        description="a per-epoch metric (val_ prefixed for the validation split); auto: the "
        "task's headline validation metric (val_accuracy, val_mean_iou, val_map, val_micro_f1)",
    )
    mode: Literal["auto", "min", "max"] = Field(
        default="auto", description="auto: min for names with loss or error, else max"
    )


class EarlyStoppingConfig(MonitorConfig):
    enabled: bool = Field(
        default=True, description="stop when the monitored metric stops improving"
    )
    patience: int = Field(
        default=10, ge=0, description="epochs without improvement before stopping"
    )
    min_delta: float = Field(
        default=0.0, description="smallest change that counts as an improvement"
    )


class AdversarialTrainingConfig(Section):
    """``train.adversarial``: train on a mix of clean and attacked images (classification, multilabel)."""

    method: Literal["fgsm", "pgd"] = Field(default="fgsm", description="the attack trained on")
    epsilon: float = Field(default=4.0, gt=0, description="L-inf radius in pixel levels (0..255)")
    ratio: float = Field(
        default=0.5, gt=0, le=1, description="share of each batch replaced by its attacked images"
    )
    steps: int = Field(default=7, ge=1, description="PGD steps")
    step_size: float | None = Field(
        default=None, gt=0, description="PGD step in pixel levels (default 2.5 x epsilon / steps)"
    )


class UnfreezeStages(Section):
    last_stages: int = Field(ge=1, description="unfreeze the backbone's last K stages")


class FinetuneConfig(Section):
    """Staged fine-tuning of a pretrained model (``model.pretrained``), in one run.

    Phase 1 trains the layers that did not come from the pretrained source
    with the pretrained ones frozen (``trainable=False``, so BatchNormalization
    runs in inference mode); phase 2 unfreezes all of them or the last stages
    and trains on with the learning rate multiplied by ``lr_factor``, after its
    own warmup. The epoch axis is continuous.
    """

    freeze_epochs: int = Field(default=5, ge=1, description="epochs of phase 1")
    unfreeze: Literal["all"] | UnfreezeStages = Field(
        default="all", description="all, or {last_stages: K}"
    )
    lr_factor: float = Field(default=0.1, gt=0, description="phase 2 learning rate factor")
    warmup_epochs: float = Field(default=0.0, ge=0, description="phase 2 linear warmup")


class TrainConfig(Section):
    epochs: int = Field(
        default=30, ge=1, description="maximum epochs (early stopping may end sooner)"
    )
    steps_per_epoch: int | None = Field(
        default=None,
        ge=1,
        description="batches per epoch (default: one pass over the training split)",
    )
    checkpoint: MonitorConfig = Field(
        default_factory=MonitorConfig,
        description="the metric whose best epoch is kept and restored",
    )
    early_stopping: EarlyStoppingConfig = Field(
        default_factory=EarlyStoppingConfig,
        description="stop when the monitored metric stops improving",
    )
    resume: bool = Field(default=True, description="Back up every epoch and resume after a crash")
    verbose: Literal["auto", 0, 1, 2] = Field(
        default="auto",
        description="Keras fit verbosity; auto: a bar on a terminal, one line per epoch otherwise",
    )
    strategy: Literal["auto", "default", "mirrored", "multi_worker", "tpu"] = Field(
        default="default",
        description="auto: multi_worker when TF_CONFIG lists several workers, else mirrored "
        "with several GPUs (or cpu_replicas > 1), else default; data.batch_size is global",
    )
    scale_learning_rate: bool = Field(
        default=False, description="multiply the learning rate by the number of replicas"
    )
    cpu_replicas: int | None = Field(
        default=None,
        ge=1,
        description="split the CPU into this many logical devices (mirrored without GPUs)",
    )
    worker_timeout_s: int = Field(
        default=60, ge=1, description="multi_worker: a peer silent this long is an error"
    )
    explain_images: int = Field(
        default=4, ge=0, description="test images explained in every run's report (0: off)"
    )
    explain_method: Literal["gradcam", "gradcam++", "saliency", "integrated_gradients"] = Field(
        default="gradcam", description="the method of the report's explanations"
    )
    adversarial: AdversarialTrainingConfig | None = Field(
        default=None, description="adversarial training (off when absent)"
    )
    finetune: FinetuneConfig | None = Field(
        default=None, description="staged fine-tuning of model.pretrained (docs/transfer.md)"
    )
    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        default=None,
        description="balanced (from the training split's counts) or {class name: weight}; "
        "segmentation and multi-label apply it in the task's loss",
    )
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        default="float32",
        description="Keras dtype policy the model is built under; outputs stay float32",
    )
    jit_compile: Literal["auto"] | bool = Field(
        default="auto", description="XLA-compile the train step (auto: Keras decides)"
    )
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, description="apply the summed gradients of this many batches"
    )

    @model_validator(mode="after")
    def _finetune_fits(self):
        # Like the warmup: `--set train.epochs=N` must work on a fine-tuning config too.
        ft = self.finetune
        if ft is None:
            return self
        if ft.freeze_epochs >= self.epochs:
            if self.epochs < 2:
                log.warning(
                    "train.epochs %d leaves no room for train.finetune's two phases; "
                    "training every layer for that epoch instead (finetune ignored)",
                    self.epochs,
                )
                self.finetune = None
                return self
            log.warning(
                "train.finetune.freeze_epochs %d does not fit in train.epochs %d; "
                "freezing for %d epochs instead",
                ft.freeze_epochs,
                self.epochs,
                self.epochs - 1,
            )
            ft = ft.model_copy(update={"freeze_epochs": self.epochs - 1})
        phase2 = self.epochs - ft.freeze_epochs
        if ft.warmup_epochs and ft.warmup_epochs >= phase2:
            log.warning(
                "train.finetune.warmup_epochs %s does not fit in phase 2's %d epochs; "
                "warming up for %s epochs instead",
                ft.warmup_epochs,
                phase2,
                phase2 / 2,
            )
            ft = ft.model_copy(update={"warmup_epochs": phase2 / 2})
        if ft is not self.finetune:
            self.finetune = ft
        return self


# ------------------------------------------------------------------ tracking
class TrackingConfig(Section):
    enabled: bool = Field(
        default=True, description="log the run to MLflow (false: train without tracking)"
    )
    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite under ./mlruns",
    )
    experiment: str | None = Field(default=None, description="default: experiment.name")
    run_name: str | None = Field(
        default=None, description="MLflow run name (default: MLflow's generated one)"
    )
    registered_model: str | None = Field(default=None, description="default: experiment.name")
    register_model: bool = Field(
        default=True, description="register the trained model in the MLflow model registry"
    )
    champion_metric: str = Field(
        default="auto",
        description="the test metric that decides the champion alias; auto: the task's "
        "(test_accuracy, test_micro_f1, test_mean_iou, test_map50)",
    )
    champion_mode: Literal["auto", "max", "min"] = Field(
        default="auto", description="auto: min for names with loss or error, else max"
    )
    log_model: bool = Field(default=True, description="log the trained Keras model to the run")
    system_metrics: bool = Field(
        default=True,
        description="log CPU, memory, disk, network and GPU use as system/ metrics (train, tune)",
    )
    system_metrics_interval_s: float = Field(
        default=5.0, ge=0.5, description="seconds between two system metrics samples"
    )

    @field_validator("experiment", "run_name", "registered_model")
    @classmethod
    def _plain_names(cls, value):
        return plain_name(value)


# ------------------------------------------------------------------ evaluate
CorruptionName = Literal[
    "gaussian_noise", "shot_noise", "gaussian_blur", "defocus_blur",
    "jpeg", "brightness", "contrast", "pixelate",
]  # fmt: skip
ExplainMethod = Literal["gradcam", "gradcam++", "saliency", "integrated_gradients"]


class CorruptionEvalConfig(Section):
    enabled: bool = Field(default=True, description="score the test split under corruptions")
    names: list[CorruptionName] = Field(
        default_factory=lambda: list(CorruptionName.__args__),
        min_length=1,
        description="the corruptions applied (ImageNet-C-like definitions)",
    )
    severities: list[Literal[1, 2, 3, 4, 5]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5],
        min_length=1,
        description="severities of each corruption, 1 (mild) to 5 (strong)",
    )


class AdversarialEvalConfig(Section):
    enabled: bool = Field(
        default=True, description="FGSM/PGD attacks (classification and multilabel)"
    )
    epsilons: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0],
        min_length=1,
        description="L-inf radii in pixel levels (0..255)",
    )
    large_epsilon: float = Field(
        default=32.0, gt=0, description="gradient-masking check: PGD must reach ~0 here"
    )
    pgd_steps: int = Field(default=10, ge=1, description="PGD iterations per attack")
    pgd_step_size: float | None = Field(
        default=None, gt=0, description="pixel levels per step (default 2.5 x epsilon / steps)"
    )
    images: int | None = Field(default=None, ge=1, description="attack at most this many images")

    @field_validator("epsilons")
    @classmethod
    def _positive(cls, value):
        if any(e <= 0 for e in value):
            raise ValueError(f"epsilons must be positive. Received: {value}")
        return value


class FaithfulnessEvalConfig(Section):
    enabled: bool = Field(
        default=True, description="deletion/insertion curves and the randomisation check"
    )
    methods: list[ExplainMethod] = Field(
        default_factory=lambda: list(ExplainMethod.__args__),
        description="explanation methods whose maps are scored",
    )
    images: int = Field(default=32, ge=1, description="images whose maps are scored")
    steps: int = Field(default=20, ge=2, description="points of each deletion/insertion curve")
    baseline: Literal["zeros", "mean"] = Field(
        default="zeros", description="value of removed pixels: black, or the image's mean"
    )
    randomization_images: int = Field(
        default=8, ge=0, description="images of the cascading randomisation check (0: off)"
    )


class EvaluateConfig(Section):
    """``evaluate:``: robustness and explanation faithfulness in the report (off by default)."""

    robustness: bool = Field(
        default=False,
        description="add corruption, adversarial and explanation-faithfulness results",
    )
    seed: int = Field(default=0, description="seed of the corruptions' random draws")
    epoch_metrics: list[str] = Field(
        default_factory=list,
        description="robustness scores added to every epoch's logs on the validation split as "
        "val_<name>_<metric> (a tune.objective can name them): corruption_mean, pgd_eps<e>, "
        "fgsm_eps<e>",
    )
    corruption: CorruptionEvalConfig = Field(
        default_factory=CorruptionEvalConfig, description="corruption robustness"
    )
    adversarial: AdversarialEvalConfig = Field(
        default_factory=AdversarialEvalConfig, description="adversarial robustness"
    )
    faithfulness: FaithfulnessEvalConfig = Field(
        default_factory=FaithfulnessEvalConfig, description="explanation faithfulness"
    )

    @field_validator("epoch_metrics")
    @classmethod
    def _known_epoch_metrics(cls, value):
        import re

        bad = [
            v for v in value if not re.fullmatch(r"corruption_mean|(fgsm|pgd)_eps\d+(\.\d+)?", v)
        ]
        if bad:
            raise ValueError(
                "epoch_metrics are corruption_mean, pgd_eps<e> or fgsm_eps<e> (e.g. pgd_eps4). "
                f"Received: {bad}"
            )
        return value


# -------------------------------------------------------------------- export
class ExportConfig(Section):
    """The ``export:`` section: write a serving SavedModel after training.

    The export goes to ``dir/<version>/`` (the TF Serving layout), is logged to
    the MLflow run under ``export/`` with a pyfunc serving model beside it, and
    is attached to the registered model version as tags.
    """

    enabled: bool = Field(
        default=True, description="export after training (`export: true` is shorthand)"
    )
    dir: str | None = Field(
        default=None, description="TF Serving base folder (default: the run's work dir/export)"
    )
    version: int | None = Field(
        default=None, ge=1, description="version subfolder (default: the next free number)"
    )
    max_payload_mb: float = Field(
        default=16.0, gt=0, description="largest HTTP request body the served model accepts"
    )
    log_serving_model: bool = Field(
        default=True, description="also log an MLflow pyfunc model that serves the SavedModel"
    )
    formats: list[str] = Field(
        default_factory=lambda: ["saved_model"],
        description="what to export, FORMAT[:QUANTIZE] each: saved_model, litert, onnx; "
        "quantize none, float16 (litert), dynamic or int8, e.g. [saved_model, litert:int8]",
    )
    max_metric_drop: float | None = Field(
        default=None,
        ge=0,
        description="fail the run when a LiteRT/ONNX artefact's test metric is this much "
        "below the Keras model's",
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        allowed = {
            "saved_model",
            *(f"{f}:{q}" for f in ("litert", "onnx") for q in ("none", "dynamic", "int8")),
            "litert",
            "onnx",
            "litert:float16",
        }
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(
                f"unknown export format(s) {bad}: use saved_model, litert or onnx, with "
                f":none, :float16 (litert), :dynamic or :int8, e.g. litert:int8"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _flag_shorthand(cls, data):
        # `export: true` / `export: false` switch the section on or off with defaults.
        return {"enabled": data} if isinstance(data, bool) else data


# ---------------------------------------------------------------------- tune
class ObjectiveConfig(Section):
    """The metric a search optimizes: any per-epoch metric of the trials' fits."""

    name: str = Field(
        default="auto",
        description="auto: the task's monitor (val_accuracy, val_micro_f1, val_mean_iou, "
        "val_map); or e.g. val_loss, loss",
    )
    direction: Literal["auto", "min", "max"] = Field(
        default="auto", description="auto: min for names with loss or error, else max"
    )


class HyperbandConfig(Section):
    """Hyperband's budget: trials train up to ``max_epochs``, keeping 1/``factor`` per round."""

    max_epochs: int = Field(default=9, ge=1, description="epochs of the longest trials")
    factor: int = Field(default=3, ge=2, description="reduction factor between rounds")
    iterations: int = Field(default=1, ge=1, description="how many times to run the brackets")


class BayesianConfig(Section):
    """Gaussian-process Bayesian optimization options."""

    num_initial_points: int | None = Field(
        default=None, ge=1, description="random trials first (default: 3 x parameters)"
    )
    alpha: float = Field(
        default=1e-4, gt=0, description="noise added to the Gaussian process's kernel diagonal"
    )
    beta: float = Field(
        default=2.6, gt=0, description="exploration weight of the upper confidence bound"
    )


class TuneConfig(Section):
    """The ``tune:`` section: a hyperparameter search over this same run config.

    ``space`` maps dotted paths of the run config to value specs (see
    :mod:`kerasflow.tuning.search_space`). The search's state lives under
    ``directory/<experiment.name>/<name>/`` so that re-running resumes it.
    """

    name: str | None = Field(default=None, description="search name (default: the tuner)")
    tuner: Literal["random", "grid", "bayesian", "hyperband"] = Field(
        default="random", description="the search algorithm"
    )
    objective: ObjectiveConfig = Field(
        default_factory=ObjectiveConfig,
        description="the metric to optimize (a name is shorthand for {name: ...})",
    )
    max_trials: int = Field(default=10, ge=1, description="ignored by hyperband")
    executions_per_trial: int = Field(
        default=1, ge=1, description="fits per trial, averaged (reduces noise)"
    )
    epochs: int | None = Field(
        default=None, ge=1, description="epochs per trial (default: train.epochs)"
    )
    max_consecutive_failures: int = Field(
        default=3, ge=1, description="stop the search after this many failed trials in a row"
    )
    directory: str = Field(default="tuning", description="root of the searches' state")
    seed: int | None = Field(default=None, description="oracle seed (default: experiment.seed)")
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted config path -> value spec: a list (choice), {min, max, step|sampling} ranges",
    )
    hyperband: HyperbandConfig = Field(
        default_factory=HyperbandConfig, description="hyperband's budget"
    )
    bayesian: BayesianConfig = Field(
        default_factory=BayesianConfig, description="bayesian optimization options"
    )

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_shorthand(cls, value):
        # `objective: val_loss` is accepted as `objective: {name: val_loss}`.
        return {"name": value} if isinstance(value, str) else value

    @field_validator("space")
    @classmethod
    def _check_space(cls, value):
        from kerasflow.space import parse_space

        try:
            parse_space(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value):
        return plain_name(value)

    @property
    def search_name(self) -> str:
        return self.name or self.tuner


class RunConfig(Section):
    """The whole run config."""

    experiment: ExperimentConfig = Field(
        default_factory=ExperimentConfig, description="name, task, seed and where run state lives"
    )
    data: DataConfig = Field(
        default_factory=DataConfig, description="where examples come from and how they are prepared"
    )
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="the model architecture and its parameters"
    )
    compile: CompileConfig = Field(
        default_factory=CompileConfig,
        description="optimizer, learning-rate schedule, loss and metrics",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="epochs, checkpointing, early stopping, distribution",
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="MLflow tracking and model registration"
    )
    evaluate: EvaluateConfig = Field(
        default_factory=EvaluateConfig,
        description="robustness and explanation faithfulness in the report (off by default)",
    )
    tune: TuneConfig | None = Field(
        default=None,
        description="a hyperparameter search over this config (used by `kerasflow tune`)",
    )
    export: ExportConfig | None = Field(
        default=None, description="write a serving SavedModel after training (off when absent)"
    )

    @model_validator(mode="after")
    def _task_model_and_source_agree(self):
        check_task_agreement(self.experiment.task, self.model.name, self.data.source)
        return self

    @model_validator(mode="after")
    def _warmup_fits(self):
        # `--set train.epochs=1` must work on any config: a warmup as long as the run
        # (compile.schedule.warmup_epochs >= train.epochs) shrinks to half the run.
        sched, epochs = self.compile.schedule, self.train.epochs
        if sched.name != "constant" and sched.warmup_epochs >= epochs:
            shrunk = epochs / 2
            log.warning(
                "compile.schedule.warmup_epochs %s does not fit in train.epochs %d; "
                "warming up for %s epochs instead",
                sched.warmup_epochs,
                epochs,
                shrunk,
            )
            schedule = sched.model_copy(update={"warmup_epochs": shrunk})
            self.compile = self.compile.model_copy(update={"schedule": schedule})
        return self

    # ---- derived values, used across the package
    @property
    def tracking_experiment(self) -> str:
        return self.tracking.experiment or self.experiment.name

    @property
    def registered_model_name(self) -> str:
        return self.tracking.registered_model or self.experiment.name

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config as plain data (what is saved with each run)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(
        self, exclude: tuple[str, ...] = ("tracking", "tune", "export", "evaluate")
    ) -> str:
        """A short stable hash of the config that decides what is trained.

        Runs with the same fingerprint resume each other's backups.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in exclude}
        if data.get("train", {}).get("adversarial", 0) is None:  # hashes as before the field
            del data["train"]["adversarial"]
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# ------------------------------------------------------ task, model and data
# The kind of registered model each task trains (models/registry.py's ``task``).
MODEL_KIND = {
    "classification": "classification",
    "multilabel": "classification",
    "segmentation": "segmentation",
    "detection": "detection",
}
# Source kinds (pipelines.sources.describe_source) that can only feed one task,
# and the tasks that can only read some kinds. A folder (class folders or VOC)
# and TFDS/TFRecord names stay open: their reader checks the rest.
SOURCE_TASK = {
    "segmentation": "segmentation",
    "coco": "detection",
    "voc": "detection",
    "synthetic:shapes_segmentation": "segmentation",
    "synthetic:shapes_detection": "detection",
    "synthetic:shapes_multilabel": "multilabel",
}
TASK_SOURCES = {
    "detection": ("coco", "voc", "tfds", "synthetic:shapes_detection"),
    "segmentation": (
        "segmentation", "npz", "tfrecord", "tfds", "synthetic:shapes_segmentation",
    ),
    "multilabel": ("manifest", "npz", "tfrecord", "tfds", "synthetic:shapes_multilabel"),
}  # fmt: skip


def source_kind(source: str) -> str:
    """What ``data.source`` names, without reading it (``coco``, ``voc``, ``folder``, ...)."""
    from pathlib import Path as _Path

    low = source.lower()
    if low.startswith("synthetic:"):
        return low
    if low.endswith(".json"):
        return "coco"
    if (_Path(source) / "Annotations").is_dir():
        return "voc"
    from kerasflow.pipelines.sources import describe_source

    return describe_source(source)


def check_task_agreement(task: str, model_name: str, source: str) -> None:
    """Raise ``ValueError`` when ``experiment.task``, the model and ``data.source`` disagree."""
    from kerasflow.models import get_spec, names

    kind = get_spec(model_name).kind if model_name in names() else None
    if kind is not None and kind != MODEL_KIND[task]:
        fitting = ", ".join(names(MODEL_KIND[task]))
        raise ValueError(
            f"model.name {model_name!r} is a {kind} model but experiment.task is {task!r}. "
            f"Choose one of: {fitting}. Received: model.name={model_name!r}"
        )
    found = source_kind(source)
    owner = SOURCE_TASK.get(found)
    if owner is not None and owner != task:
        raise ValueError(
            f"data.source {source!r} is a {owner} source but experiment.task is {task!r}. "
            f"Set experiment.task: {owner}, or point data.source at {task} data."
        )
    allowed = TASK_SOURCES.get(task)
    if allowed is not None and found not in allowed and found != "unknown":
        raise ValueError(
            f"experiment.task {task!r} cannot read data.source {source!r} (a {found} source). "
            f"Use one of these kinds of source: {', '.join(allowed)}."
        )


# ------------------------------------------------------------------- loading
def _format_loc(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _section_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = RunConfig
    for item in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or item not in fields:
            return None
        model = fields[item].annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def _explain(error: ValidationError, origin: str) -> ConfigError:
    lines = []
    for err in error.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x))
        path = _format_loc(loc)
        if err["type"] == "extra_forbidden":
            parent = _section_at(loc[:-1])
            allowed = sorted(parent.model_fields) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            lines.append(f"  {path}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}.")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" Received: {value!r}."
            lines.append(f"  {path}: {msg}.{shown}")
    return ConfigError(f"Invalid run config {origin}:\n" + "\n".join(lines))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key. Received: {text!r}")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set has an empty key. Received: {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {key}: value is not valid YAML ({exc}). Received: {raw!r}"
        ) from exc
    return path, value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``data[path[0]][path[1]]... = value``, creating dicts on the way."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None or isinstance(child, str):
            # `optimizer: adam` shorthand becomes a mapping before descending.
            child = {} if child is None else {"name": child}
            node[part] = child
        elif not isinstance(child, dict):
            raise ConfigError(
                f"Cannot set {'.'.join(path)}: {part!r} holds {child!r}, not a section."
            )
        node = child
    node[path[-1]] = value


def default_config_path() -> Path:
    """The packaged default run config (digits)."""
    return Path(str(resources.files("kerasflow") / "configs" / DEFAULT_CONFIG))


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}. Pass an existing YAML file.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections. Received: {data!r}")
    return data


def build_config(
    data: dict[str, Any], overrides: list[str] | None = None, origin: str = ""
) -> RunConfig:
    """Validate raw config data (plus ``a.b=value`` overrides) into a :class:`RunConfig`."""
    data = copy.deepcopy(data)
    for text in overrides or []:
        path, value = parse_override(text)
        set_dotted(data, path, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, origin or "(from data)") from None


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """Load, override and validate a run config.

    Args:
        path: a YAML file; ``None`` loads the packaged default (digits).
        overrides: ``["a.b.c=value", ...]``; values are parsed as YAML.

    Raises:
        ConfigError: naming the dotted field, the bad value and the choices.
    """
    path = Path(path) if path is not None else default_config_path()
    return build_config(read_yaml(path), overrides, origin=str(path))


def as_config(config=None, overrides: list[str] | None = None) -> RunConfig:
    """A :class:`RunConfig` from a config, a YAML path or None (the default), plus overrides."""
    if isinstance(config, RunConfig):
        if overrides:
            return build_config(config.to_dict(), overrides, origin="(overrides)")
        return config
    return load_config(config, overrides)


# -------------------------------------------------------------------- schema
SCHEMA_FILE = "schema.json"
# Fields whose validators also take a shorthand (`optimizer: adam`, `export: true`),
# so that editors checking a config against the schema accept what loading accepts.
_SHORTHANDS = {
    ("CompileConfig", "optimizer"): {"type": "string"},
    ("CompileConfig", "schedule"): {"type": "string"},
    ("CompileConfig", "loss"): {"type": "string"},
    ("TuneConfig", "objective"): {"type": "string"},
    ("AugmentConfig", "random_resized_crop"): {"type": "boolean"},
    ("AugmentConfig", "randaugment"): {"type": "boolean"},
    ("RunConfig", "export"): {"type": "boolean"},
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a run config (pydantic's, plus the accepted shorthands).

    Every property carries a ``description``; ``kerasflow config schema`` prints
    this and the packaged ``configs/schema.json`` is a copy of it.
    """
    schema = RunConfig.model_json_schema()
    for (section, field), extra in _SHORTHANDS.items():
        owner = schema if section == "RunConfig" else schema["$defs"][section]
        prop = owner["properties"][field]
        keep = {k: v for k, v in prop.items() if k not in ("$ref", "anyOf", "allOf")}
        options = prop.get("anyOf") or [{"$ref": prop["$ref"]}]
        owner["properties"][field] = {**keep, "anyOf": [*options, extra]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


def json_schema_text() -> str:
    """:func:`json_schema` as the exact text of the packaged ``configs/schema.json``."""
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def packaged_schema_path() -> Path:
    """The schema file shipped beside the packaged configs."""
    return default_config_path().with_name(SCHEMA_FILE)
