"""Explanations of a classifier's decisions as heatmaps over the input image.

Methods (all gradient based, computed with ``tf.GradientTape``):

- ``gradcam``: Grad-CAM (Selvaraju et al., 2017): the last convolutional
  feature map weighted by the spatial mean of the class score's gradient.
- ``gradcam++``: Grad-CAM++ (Chattopadhyay et al., 2018): pixel-wise weights
  from second and third powers of the gradient.
- ``saliency``: vanilla gradient saliency ``max_c |d score / d x|``; with
  ``samples > 0`` SmoothGrad (Smilkov et al., 2017) averages the gradient over
  noisy copies of the image.
- ``integrated_gradients``: Integrated Gradients (Sundararajan et al., 2017)
  from a baseline (default all zeros) in ``steps`` trapezoid steps.

The class score is the logit, the input of the model's final
``{name}_probabilities`` softmax (every kerasflow classifier ends with it):
gradients of the softmax output saturate when the model is confident.

Example:
    >>> from kerasflow.training import explain
    >>> maps = explain.heatmaps(model, images, method="gradcam")  # (n, H, W) in 0..1
    >>> result = explain.explain(model, images, "integrated_gradients", steps=64)
    >>> result.predictions, result.attributions.shape
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerasflow.errors import DataError, ModelError
from kerasflow.progress import progress

log = logging.getLogger(__name__)

METHODS = ("gradcam", "gradcam++", "saliency", "integrated_gradients")


@dataclass
class Explanation:
    """What :func:`explain` returns for ``n`` images of size ``H x W``.

    Attributes:
        method: the method name.
        heatmaps: ``(n, H, W)`` float32 in 0..1 (each map divided by its maximum).
        attributions: the unnormalised maps: ``(n, H, W)`` for Grad-CAM(++),
            ``(n, H, W, C)`` signed input attributions for saliency (gradients)
            and Integrated Gradients.
        targets: the explained class of each image.
        predictions: the predicted class of each image.
        probabilities: ``(n, classes)`` model outputs.
        layer: the feature-map layer used by Grad-CAM(++), else None.
    """

    method: str
    heatmaps: np.ndarray
    attributions: np.ndarray
    targets: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    layer: str | None = None


# ----------------------------------------------------------------- model surgery
def find_last_conv_layer(model: keras.Model) -> str:
    """Name of the layer whose output is the last convolutional feature map.

    That is the last layer (in graph order) with a 4-D output larger than one
    pixel; when every feature map is 1 x 1 (a tiny input), the last 4-D one.

    Raises:
        ModelError: the model has no 4-D feature map (not a convolutional model).
    """
    spatial: list[tuple[str, int]] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # shared layers have no single output
            continue
        if len(shape) == 4:
            spatial.append((layer.name, int((shape[1] or 0) * (shape[2] or 0))))
    if not spatial:
        raise ModelError(
            f"Model {model.name!r} has no 4-D (convolutional) feature map for Grad-CAM; "
            "use method saliency or integrated_gradients."
        )
    larger = [name for name, pixels in spatial if pixels > 1]
    return larger[-1] if larger else spatial[-1][0]


def logits_tensor(model: keras.Model):
    """The class-score tensor: the input of the final softmax, else the model output."""
    last = None
    try:
        last = model.get_layer(f"{model.name}_probabilities")
    except ValueError:
        final = model.layers[-1]
        if isinstance(final, keras.layers.Activation) and final.get_config().get("activation") in (
            "softmax",
            "sigmoid",
        ):
            last = final
    if last is not None:
        return last.input
    log.warning("model %s has no final softmax layer; explaining its outputs", model.name)
    return model.outputs[0]


def _check_classifier(model: keras.Model) -> None:
    shape = model.outputs[0].shape
    if len(shape) != 2:
        raise ModelError(
            f"Explanations need a classifier with outputs (batch, classes). "
            f"Received: output shape {tuple(shape)} of model {model.name!r}"
        )


def score_model(model: keras.Model, layer: str | None = None) -> tuple[keras.Model, str | None]:
    """A functional model from the input to ``[feature map,] logits`` and the layer name used.

    Args:
        layer: name of the feature-map layer (Grad-CAM), ``"auto"`` for
            :func:`find_last_conv_layer`, or None for logits only.
    """
    _check_classifier(model)
    logits = logits_tensor(model)
    if layer is None:
        return keras.Model(model.inputs, logits, name=f"{model.name}_scores"), None
    name = find_last_conv_layer(model) if layer == "auto" else layer
    try:
        fmap = model.get_layer(name).output
    except ValueError as exc:
        raise ModelError(
            f"No layer {name!r} in model {model.name!r}. Received: layer={layer!r}"
        ) from exc
    return keras.Model(model.inputs, [fmap, logits], name=f"{model.name}_cam"), name


# ----------------------------------------------------------------- helpers
def _targets(probabilities: np.ndarray, target) -> np.ndarray:
    n, classes = probabilities.shape
    if target is None:
        out = probabilities.argmax(axis=1)
    else:
        out = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,)).copy()
    if out.size and (out.min() < 0 or out.max() >= classes):
        raise ModelError(f"target classes must be in 0..{classes - 1}. Received: target={target}")
    return out.astype(np.int64)


def _normalize(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (negative values clipped): 0..1."""
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0)
    peak = maps.reshape(len(maps), -1).max(axis=1) if len(maps) else np.zeros(0)
    return maps / np.where(peak > 0, peak, 1)[:, None, None]


def _pick(logits, targets):
    return tf.gather(tf.cast(logits, tf.float32), targets, batch_dims=1)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


# ----------------------------------------------------------------- methods
def _cam(model, images, targets, layer, plus: bool, batch_size: int):
    cam_model, name = score_model(model, layer or "auto")
    h, w = images.shape[1:3]
    out = []
    for sl in _batches(len(images), batch_size):
        x = tf.convert_to_tensor(images[sl], tf.float32)
        t = tf.convert_to_tensor(targets[sl])
        with tf.GradientTape() as tape:
            fmap, logits = cam_model(x, training=False)
            score = _pick(logits, t)
        grads = tf.cast(tape.gradient(score, fmap), tf.float32)
        fmap = tf.cast(fmap, tf.float32)
        if plus:
            g2, g3 = grads**2, grads**3
            total = tf.reduce_sum(fmap, axis=(1, 2), keepdims=True)
            denom = 2.0 * g2 + total * g3
            alpha = tf.math.divide_no_nan(g2, denom)
            weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2))
        else:
            weights = tf.reduce_mean(grads, axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", fmap, weights))
        cam = tf.image.resize(cam[..., None], (h, w), method="bilinear")[..., 0]
        out.append(cam.numpy())
    return np.concatenate(out), name


def _input_gradients(logit_model, x, targets):
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = _pick(logit_model(x, training=False), targets)
    return tape.gradient(score, x)


def _saliency(model, images, targets, samples: int, noise: float, seed: int, batch_size: int):
    logit_model, _ = score_model(model)
    rng = np.random.default_rng(seed)
    grads = []
    for sl in _batches(len(images), batch_size):
        x = images[sl]
        t = tf.convert_to_tensor(targets[sl])
        if samples <= 0:
            grads.append(_input_gradients(logit_model, x, t).numpy())
            continue
        span = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
        total = np.zeros_like(x, dtype=np.float32)
        for _ in range(samples):
            noisy = x + rng.normal(size=x.shape).astype(np.float32) * noise * span
            total += _input_gradients(logit_model, noisy, t).numpy()
        grads.append(total / samples)
    return np.concatenate(grads)


def _baseline_for(image: np.ndarray, baseline) -> np.ndarray:
    if baseline is None:
        return np.zeros_like(image)
    if isinstance(baseline, str):
        if baseline == "zeros":
            return np.zeros_like(image)
        if baseline == "mean":
            return np.broadcast_to(image.mean(axis=(0, 1), keepdims=True), image.shape).copy()
        raise ModelError(
            f"baseline must be a number, an array, 'zeros' or 'mean'. Received: {baseline!r}"
        )
    b = np.asarray(baseline, dtype=np.float32)
    try:
        return np.broadcast_to(b, image.shape).astype(np.float32)
    except ValueError as exc:
        raise ModelError(
            f"baseline of shape {b.shape} does not broadcast to the image shape {image.shape}."
        ) from exc


def _integrated_gradients(model, images, targets, baseline, steps: int, batch_size: int):
    if steps < 1:
        raise ModelError(f"steps must be at least 1. Received: steps={steps}")
    logit_model, _ = score_model(model)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)[:, None, None, None]
    # Trapezoid rule over the straight path from the baseline to the image.
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] /= 2
    out = []
    pairs = zip(images, targets, strict=True)
    for image, target in progress(
        pairs, "integrated gradients", total=len(images), unit="image", min_items=8
    ):
        base = _baseline_for(image, baseline)
        path = base[None] + alphas * (image - base)[None]
        grads = []
        for sl in _batches(len(path), batch_size):
            t = tf.fill([sl.stop - sl.start], tf.constant(int(target), tf.int64))
            grads.append(_input_gradients(logit_model, path[sl], t).numpy())
        avg = np.tensordot(weights, np.concatenate(grads), axes=1)
        out.append((image - base) * avg)
    return np.stack(out).astype(np.float32)


def explain(
    model: keras.Model,
    images,
    method: str = "gradcam",
    target=None,
    *,
    layer: str | None = None,
    samples: int = 0,
    noise: float = 0.15,
    baseline=None,
    steps: int = 32,
    seed: int = 0,
    batch_size: int = 32,
) -> Explanation:
    """Explain a classifier's score for a batch of preprocessed images.

    Args:
        model: a classifier with outputs ``(batch, classes)``.
        images: ``(n, H, W, C)`` (or one ``(H, W, C)``) float images, preprocessed
            as the model expects.
        method: one of :data:`METHODS`.
        target: class id (or one per image) to explain; None explains the
            predicted class.
        layer: Grad-CAM(++) feature-map layer; default :func:`find_last_conv_layer`.
        samples: SmoothGrad noisy copies for ``saliency`` (0: vanilla gradients).
        noise: SmoothGrad noise std as a fraction of each image's value range.
        baseline: Integrated Gradients start: None/``"zeros"``, ``"mean"``
            (per-channel image mean), a number or an array.
        steps: Integrated Gradients path steps.
        seed: SmoothGrad noise seed.

    Returns:
        An :class:`Explanation`; ``heatmaps`` are ``(n, H, W)`` in 0..1.

    Raises:
        ModelError: unknown method, a non-classifier, a bad target, layer or baseline.
    """
    if method not in METHODS:
        raise ModelError(
            f"Unknown explanation method. Choose one of: {', '.join(METHODS)}. "
            f"Received: method={method!r}"
        )
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise DataError(f"images must be (n, H, W, C). Received: shape {images.shape}")
    _check_classifier(model)
    # Direct calls, not model.predict: no tf.function to trace for a handful of images.
    probs = np.concatenate(
        [
            np.asarray(model(images[sl], training=False), np.float32)
            for sl in _batches(len(images), batch_size)
        ]
    )
    predictions = probs.argmax(axis=1)
    targets = _targets(probs, target)
    used_layer = None
    if method in ("gradcam", "gradcam++"):
        raw, used_layer = _cam(model, images, targets, layer, method == "gradcam++", batch_size)
        maps = raw
    elif method == "saliency":
        raw = _saliency(model, images, targets, samples, noise, seed, batch_size)
        maps = np.abs(raw).max(axis=-1)
    else:
        raw = _integrated_gradients(model, images, targets, baseline, steps, batch_size)
        maps = np.abs(raw).sum(axis=-1)
    return Explanation(
        method=method,
        heatmaps=_normalize(maps),
        attributions=raw,
        targets=targets,
        predictions=predictions,
        probabilities=probs,
        layer=used_layer,
    )


def heatmaps(model: keras.Model, images, method: str = "gradcam", target=None, **options):
    """Only the ``(n, H, W)`` 0..1 heatmaps of :func:`explain` (same arguments)."""
    return explain(model, images, method, target, **options).heatmaps


# ----------------------------------------------------------------- files
def load_images(paths, data_config) -> np.ndarray:
    """Image files decoded and preprocessed exactly as the model's pipeline does (0..255 pixels).

    Raises:
        DataError: a file is missing or not a decodable image.
    """
    from kerasflow.pipelines import decode_image, preprocess

    out = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Image file not found: {path}")
        try:
            image = decode_image(tf.io.read_file(str(path)), data_config.channels)
        except tf.errors.InvalidArgumentError as exc:
            raise DataError(f"Cannot decode {path} as an image: {exc.message}") from exc
        out.append(preprocess(image, data_config).numpy())
    return np.stack(out).astype(np.float32)


def _display(images):
    from kerasflow.tasks.base import display_images

    return display_images(images)


def _label_text(names: list[str], label) -> str:
    """A class id's name, or the names of a multi-hot row joined by ``|``."""
    label = np.asarray(label)
    if label.ndim == 0:
        return names[int(label)]
    return "|".join(names[i] for i in np.flatnonzero(label)) or "(none)"


def write_split_explanations(
    model, prepared, out_dir, split: str = "test", count: int = 4, method: str = "gradcam"
) -> list[Path]:
    """Explain the predicted class of the first ``count`` images of a split.

    Writes ``explanations_<split>_<method>.png`` (image / heatmap / overlay rows)
    into ``out_dir``.

    Returns:
        The files written (none for an empty split or ``count`` 0).
    """
    from kerasflow.tasks import plots
    from kerasflow.tasks.base import take_examples

    n = min(int(count), prepared.size(split))
    if n <= 0:
        return []
    images = take_examples(prepared, split, range(n))
    result = explain(model, images, method)
    labels = prepared.labels(split)[:n]
    names = prepared.class_names
    titles = [
        f"true {_label_text(names, t)} / pred {names[p]} ({result.probabilities[i, p]:.2f})"
        for i, (t, p) in enumerate(zip(labels, result.predictions, strict=True))
    ]
    safe = method.replace("++", "pp")
    path = Path(out_dir) / f"explanations_{split}_{safe}.png"
    plots.explanation_grid_png(_display(images), result.heatmaps, titles, path)
    return [path]


def overlay_stems(paths) -> list[str]:
    """One distinct output name per input path: the file's stem, with as many parent folder
    names as it takes to tell inputs with the same file name apart (``a/1.png``, ``b/1.png``
    -> ``a_1``, ``b_1``); a path given twice gets a counter."""
    parts = [Path(p).resolve().with_suffix("").parts for p in paths]
    depth = [1] * len(parts)
    while True:
        stems = ["_".join(p[-d:]).lstrip("/_") for p, d in zip(parts, depth, strict=True)]
        clashes = {s for s in stems if stems.count(s) > 1}
        grow = [i for i, s in enumerate(stems) if s in clashes and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    out = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out


def _class_names(model: str, cfg) -> list[str] | None:
    """The model's class names: its stored contract, else (a bare ``.keras`` file) its data."""
    from kerasflow import tasks
    from kerasflow.tracking import model_registry

    contract = model_registry.load_contract(model, cfg.tracking.uri)
    if contract is not None:
        return [str(c) for c in contract["class_names"]]
    try:
        return list(
            tasks.get(cfg.experiment.task).prepare(cfg.data, cfg.experiment.seed).class_names
        )
    except DataError as exc:  # the data may live elsewhere than the model
        log.warning("class names unavailable (%s); reporting class ids", exc)
        return None


def explain_files(
    model: str,
    paths,
    out_dir,
    method: str = "gradcam",
    target: int | None = None,
    config=None,
    overrides=None,
    **options,
) -> list[dict]:
    """Explain image files with a saved or registered model; write one overlay PNG per image.

    Args:
        model: ``models:/NAME@alias``, ``models:/NAME/VERSION``, ``runs:/RUN_ID/model``
            or a ``.keras`` file.
        paths: image files.
        out_dir: folder for ``<image stem>_<method>.png`` overlays, each labelled with the
            predicted class and its score (inputs with the same file name in different
            folders get the folder names too: :func:`overlay_stems`). Class names come from
            the contract stored with the model; the data is read only for a ``.keras`` file.
        target: class id to explain (default: the predicted class).
        config: run config (path or RunConfig) for the preprocessing; default:
            the config logged with the model's run.
        **options: passed to :func:`explain` (``layer``, ``samples``, ``baseline``, ``steps``).

    Returns:
        One dict per image: ``image``, ``overlay``, ``predicted``, ``target``,
        ``probability`` (of the predicted class) and class names when known.
    """
    from kerasflow.tasks import plots
    from kerasflow.tracking import model_registry

    cfg = model_registry.config_for_model(model, config, overrides)
    keras_model = model_registry.load_model(model, cfg.tracking.uri)
    images = load_images(paths, cfg.data)
    result = explain(keras_model, images, method, target, **options)
    names = _class_names(model, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shown = _display(images)
    safe = method.replace("++", "pp")
    rows = []
    for i, (path, stem) in enumerate(zip(paths, overlay_stems(paths), strict=True)):
        pred, tgt = int(result.predictions[i]), int(result.targets[i])
        label = f"{names[pred] if names else pred} {float(result.probabilities[i, pred]):.3f}"
        if tgt != pred:
            label += f" (explains {names[tgt] if names else tgt})"
        overlay = plots.overlay_png(
            shown[i], result.heatmaps[i], out / f"{stem}_{safe}.png", label=label
        )
        row = {
            "image": str(path),
            "overlay": str(overlay),
            "predicted": pred,
            "target": tgt,
            "probability": float(result.probabilities[i, pred]),
        }
        if names is not None:
            row["predicted_name"] = names[pred]
            row["target_name"] = names[tgt]
        rows.append(row)
    return rows
