"""Does an explanation point at what the model uses? Deletion/insertion curves and model randomisation.

- **Deletion** (Petsiuk et al., 2018, RISE): remove the pixels in the order the
  map ranks them, most important first, re-predict after each step; the
  class-score curve of a faithful map falls fast, so a *lower* area under it
  is better.
- **Insertion**: start from the baseline image and reveal the pixels in the
  same order; a faithful map's curve rises fast, a *higher* area is better.
- A **random ranking** of the same pixels of the same images (seeded) is the
  reference: a method is only informative where it beats it.
- **Cascading model randomisation** (Adebayo et al., 2018, "Sanity checks for
  saliency maps"): the trained weights are replaced layer after layer, from the
  top (output) down, by a random permutation of themselves; after each layer
  the maps of the same images and classes are compared with the trained
  model's by Spearman rank correlation. A map that keeps its correlation while
  the model is destroyed does not explain the model (edge detector).

Removed pixels take the ``baseline`` value (``zeros``: black, 0 of 255, as in
RISE; ``mean``: each image's per-channel mean); the class score is the
model's output probability of the explained class (its prediction).
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from kerasflow.tasks.base import take_examples
from kerasflow.training import explain

log = logging.getLogger(__name__)

RANDOM = "random"


def _auc(fractions: np.ndarray, values: np.ndarray) -> float:
    return float(((values[1:] + values[:-1]) / 2 * np.diff(fractions)).sum())


def ranking(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel's rank (0: most important) of a map; ties in random (seeded) order."""
    flat = np.asarray(heatmap, np.float64).ravel()
    order = np.lexsort((rng.random(flat.size), -flat))
    rank = np.empty(flat.size, np.int64)
    rank[order] = np.arange(flat.size)
    return rank.reshape(np.shape(heatmap))


def _baseline(image: np.ndarray, kind: str) -> np.ndarray:
    if kind == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1), keepdims=True), image.shape)
    return np.zeros_like(image)


def _scores(model, images: np.ndarray, target: int, batch_size: int = 64) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        probs = np.asarray(model(images[start : start + batch_size], training=False), np.float64)
        out.append(probs[:, target])
    return np.concatenate(out)


def curves(model, images, ranks, targets, steps: int = 20, baseline: str = "zeros") -> dict:
    """Deletion and insertion curves of images whose pixels are ranked by ``ranks``.

    Args:
        images: ``(n, H, W, C)`` model-input pixels.
        ranks: ``(n, H, W)`` pixel ranks (0: removed/revealed first), see :func:`ranking`.
        targets: the class whose score is followed, per image.
        steps: points after the start (fractions ``0, 1/steps, ..., 1``).

    Returns:
        ``{"fractions": [...], "deletion": mean curve, "insertion": mean curve,
        "deletion_auc": mean of per-image AUCs, "insertion_auc": ...}``.
    """
    fractions = np.linspace(0.0, 1.0, steps + 1)
    deletion, insertion = [], []
    for image, rank, target in zip(images, ranks, targets, strict=True):
        count = np.round(fractions * rank.size).astype(np.int64)
        masks = (rank[None] < count[:, None, None])[..., None].astype(np.float32)
        base = _baseline(image, baseline).astype(np.float32)
        removed = image[None] * (1 - masks) + base[None] * masks
        revealed = base[None] * (1 - masks) + image[None] * masks
        deletion.append(_scores(model, removed.astype(np.float32), int(target)))
        insertion.append(_scores(model, revealed.astype(np.float32), int(target)))
    deletion, insertion = np.array(deletion), np.array(insertion)
    return {
        "fractions": fractions.tolist(),
        "deletion": deletion.mean(axis=0).tolist(),
        "insertion": insertion.mean(axis=0).tolist(),
        "deletion_auc": float(np.mean([_auc(fractions, d) for d in deletion])),
        "insertion_auc": float(np.mean([_auc(fractions, c) for c in insertion])),
    }


def average_ranks(values) -> np.ndarray:
    """Ranks (0-based) of a 1-D array, tied values sharing their mean rank."""
    _, inverse, counts = np.unique(np.ravel(values), return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + end - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (0 when either is constant)."""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def randomized_layers(model: keras.Model) -> list[str]:
    """Names of the layers with trainable weights, top (output) first: the cascade's order."""
    return [layer.name for layer in reversed(model.layers) if layer.trainable_weights]


def cascading_randomization(
    model: keras.Model, images, methods, targets, seed: int = 0, **options
) -> dict:
    """Map correlation with the trained model's as layers are randomised from the top down.

    Returns:
        ``{"layers": [layer names, top first], "spearman": {method: [mean per step]}}``;
        step ``i`` has layers ``0..i`` randomised.
    """
    rng = np.random.default_rng(seed)
    reference = {m: explain.heatmaps(model, images, m, targets, **options) for m in methods}
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = randomized_layers(copy)
    result: dict[str, list[float]] = {m: [] for m in methods}
    for name in layers:
        for weight in copy.get_layer(name).trainable_weights:
            value = np.asarray(weight.numpy())
            weight.assign(rng.permutation(value.ravel()).reshape(value.shape))
        for method in methods:
            maps = explain.heatmaps(copy, images, method, targets, **options)
            result[method].append(
                float(
                    np.mean([spearman(a, b) for a, b in zip(reference[method], maps, strict=True)])
                )
            )
    return {"layers": layers, "spearman": result}


def evaluate_faithfulness(model, data, split: str, section, seed: int = 0) -> dict:
    """Deletion/insertion AUC per method and a random ranking, then the randomisation check.

    Args:
        section: the config's ``evaluate.faithfulness`` (``methods``, ``images``,
            ``steps``, ``baseline``, ``randomization_images``).

    Returns:
        ``{"images", "steps", "baseline", "methods": {method or "random": curves},
        "randomization": ...}`` (see :func:`curves`, :func:`cascading_randomization`).
    """
    n = min(int(section.images), data.size(split))
    images = take_examples(data, split, range(n)).astype(np.float32)
    rng = np.random.default_rng(seed)
    results: dict[str, dict] = {}
    targets = None
    for method in section.methods:
        result = explain.explain(model, images, method, seed=seed)
        targets = result.targets
        ranks = np.stack([ranking(m, rng) for m in result.heatmaps])
        results[method] = curves(model, images, ranks, targets, section.steps, section.baseline)
    if targets is None:
        targets = np.asarray(model(images, training=False)).argmax(axis=1)
    shuffled = np.stack([ranking(rng.random(images.shape[1:3]), rng) for _ in range(n)])
    results[RANDOM] = curves(model, images, shuffled, targets, section.steps, section.baseline)
    out: dict = {
        "images": n,
        "steps": int(section.steps),
        "baseline": section.baseline,
        "seed": int(seed),
        "methods": results,
    }
    k = min(int(section.randomization_images), n)
    if k > 0 and section.methods:
        out["randomization"] = cascading_randomization(
            model, images[:k], list(section.methods), targets[:k], seed
        )
    return out


def scalar_metrics(result: dict) -> dict[str, float]:
    """``explain_<method>_deletion_auc``, ``..._insertion_auc`` and ``..._randomization_spearman``.

    The randomisation figure is the correlation left with every layer randomised.
    """
    out = {}
    for method, curve in result["methods"].items():
        key = method.replace("++", "pp")
        out[f"explain_{key}_deletion_auc"] = curve["deletion_auc"]
        out[f"explain_{key}_insertion_auc"] = curve["insertion_auc"]
    for method, values in (result.get("randomization") or {}).get("spearman", {}).items():
        if values:
            out[f"explain_{method.replace('++', 'pp')}_randomization_spearman"] = values[-1]
    return out
