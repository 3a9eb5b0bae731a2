"""Matplotlib figures written as PNG files (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_png(
    matrix, class_names, path, normalize: bool = False, title: str = ""
) -> Path:
    """Write a labelled confusion matrix (rows: true, columns: predicted)."""
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (normalised)" if normalize else "confusion matrix"))
    if n <= 30:
        peak = m.max() or 1
        for i in range(n):
            for j in range(n):
                text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] > peak / 2 else "black",
                )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def confusion_matrices_png(cm, class_names, out, split: str) -> list[Path]:
    """``confusion_matrix_<split>.png`` (counts) and ``..._normalized.png`` (by true class)."""
    out = Path(out)
    return [
        confusion_matrix_png(cm, class_names, out / f"confusion_matrix_{split}.png"),
        confusion_matrix_png(
            cm, class_names, out / f"confusion_matrix_{split}_normalized.png", normalize=True
        ),
    ]


def training_curves_png(history: dict[str, dict[int, float]], path) -> Path:
    """Loss and each metric per epoch, train against validation.

    Args:
        history: ``{metric: {epoch: value}}`` with ``val_`` keys for validation.
    """
    bases = sorted({k.removeprefix("val_") for k in history if k != "learning_rate"})
    bases.sort(key=lambda k: k != "loss")
    cols = max(1, len(bases))
    fig, axes = plt.subplots(1, cols, figsize=(4.5 * cols, 3.6), dpi=100, squeeze=False)
    for ax, base in zip(axes[0], bases, strict=False):
        for key, label in ((base, "train"), (f"val_{base}", "validation")):
            if key in history and history[key]:
                steps = sorted(history[key])
                ax.plot(steps, [history[key][s] for s in steps], marker=".", label=label)
        ax.set_title(base)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# ---------------------------------------------------------------- evaluation figures
# Figure sizes are fixed (inches x dpi, no tight bounding box) so a PNG's pixel
# size is known in advance: the tests read it from the file header.
CURVE_SIZE = (6.0, 5.0)  # 600 x 500 px
GRID_CELL = 1.6  # inches per image cell
MAX_LEGEND = 12


def _curve_axes(title: str, xlabel: str, ylabel: str):
    fig, ax = plt.subplots(figsize=CURVE_SIZE, dpi=100)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, path) -> Path:
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def roc_curves_png(y_true, probabilities, class_names, path) -> Path:
    """One-vs-rest ROC curve per class with its AUC in the legend (600 x 500 px)."""
    from kerasflow.tasks.curves import roc_curve

    y_true = np.asarray(y_true).reshape(-1)
    probs = np.asarray(probabilities)
    fig, ax = _curve_axes("ROC (one vs rest)", "false positive rate", "true positive rate")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for i, name in enumerate(class_names):
        fpr, tpr, auc = roc_curve(y_true == i, probs[:, i])
        if auc is None:
            continue
        label = f"{name} (AUC {auc:.3f})" if i < MAX_LEGEND else None
        ax.plot(fpr, tpr, lw=1.2, label=label)
    if len(class_names):
        ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def pr_curves_png(y_true, probabilities, class_names, path) -> Path:
    """One-vs-rest precision-recall curve per class with its average precision (600 x 500 px)."""
    from kerasflow.tasks.curves import precision_recall_curve

    y_true = np.asarray(y_true).reshape(-1)
    probs = np.asarray(probabilities)
    fig, ax = _curve_axes("precision-recall (one vs rest)", "recall", "precision")
    for i, name in enumerate(class_names):
        precision, recall, ap = precision_recall_curve(y_true == i, probs[:, i])
        if ap is None:
            continue
        label = f"{name} (AP {ap:.3f})" if i < MAX_LEGEND else None
        ax.step(recall, precision, where="post", lw=1.2, label=label)
    if len(class_names):
        ax.legend(loc="lower left", fontsize=7)
    return _save(fig, path)


def reliability_png(calibration: dict, path) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal (600 x 500 px).

    Args:
        calibration: the ``calibration`` entry of a classification report.
    """
    edges = np.asarray(calibration["bin_edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    acc = np.array([a if a is not None else 0.0 for a in calibration["bin_accuracy"]])
    conf = np.array([c if c is not None else 0.0 for c in calibration["bin_confidence"]])
    counts = np.asarray(calibration["bin_counts"])
    ece = calibration["expected_calibration_error"]
    fig, ax = _curve_axes(f"reliability (ECE {ece:.4f})", "confidence", "accuracy")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    shown = counts > 0
    ax.bar(centers[shown], acc[shown], width[shown], edgecolor="black", alpha=0.7, label="accuracy")
    # Mean confidence as a red tick per bin: the gap to the bar top is the miscalibration.
    ax.hlines(
        conf[shown],
        edges[:-1][shown],
        edges[1:][shown],
        colors="red",
        linewidth=2,
        label="mean confidence",
    )
    for x, a, c in zip(centers[shown], acc[shown], conf[shown], strict=True):
        ax.plot([x, x], [a, c], color="red", lw=0.8, alpha=0.6)
    frac = counts / max(counts.sum(), 1)
    ax.bar(
        centers,
        frac * 0.15,
        width,
        bottom=0,
        color="grey",
        alpha=0.5,
        label="share of examples (x0.15)",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def _grid_shape(n: int, columns: int) -> tuple[int, int]:
    cols = max(1, min(columns, n))
    return max(1, -(-n // cols)), cols


def _show(ax, image) -> None:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid_png(images, titles, path, columns: int = 4, title: str = "") -> Path:
    """Images (0..1, HWC) in a grid with a caption each; ``GRID_CELL`` inches per cell."""
    n = len(images)
    rows, cols = _grid_shape(n, columns)
    fig, axes = plt.subplots(
        rows, cols, figsize=(GRID_CELL * cols, GRID_CELL * rows + 0.4), dpi=100, squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        if k < n:
            _show(ax, images[k])
            ax.set_title(titles[k], fontsize=6)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def segmentation_grid_png(images, true_masks, pred_masks, num_classes: int, path) -> Path:
    """Rows of image / true mask / predicted mask (masks coloured by class id)."""
    n = len(images)
    fig, axes = plt.subplots(
        max(n, 1), 3, figsize=(GRID_CELL * 3, GRID_CELL * max(n, 1) + 0.3), dpi=100, squeeze=False
    )
    cmap = plt.get_cmap("tab20" if num_classes > 10 else "tab10", max(num_classes, 2))
    for row in range(n):
        _show(axes[row, 0], images[row])
        for col, mask in ((1, true_masks[row]), (2, pred_masks[row])):
            axes[row, col].imshow(
                np.squeeze(mask),
                cmap=cmap,
                vmin=0,
                vmax=max(num_classes - 1, 1),
                interpolation="nearest",
            )
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    for col, name in enumerate(("image", "true mask", "predicted mask")):
        axes[0, col].set_title(name, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def overlay(image, heatmap, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """A 0..1 RGB image with a 0..1 heatmap blended on top, ``(H, W, 3)`` float."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    colours = plt.get_cmap(cmap)(np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1))[..., :3]
    return np.clip((1 - alpha) * image + alpha * colours, 0, 1)


def explanation_grid_png(images, heatmaps, titles, path, alpha: float = 0.5) -> Path:
    """Rows of image / heatmap / overlay, one row per explained image."""
    n = len(images)
    fig, axes = plt.subplots(
        max(n, 1), 3, figsize=(GRID_CELL * 3, GRID_CELL * max(n, 1) + 0.3), dpi=100, squeeze=False
    )
    for row in range(n):
        _show(axes[row, 0], images[row])
        axes[row, 0].set_ylabel(titles[row], fontsize=6)
        axes[row, 1].imshow(heatmaps[row], cmap="jet", vmin=0, vmax=1, interpolation="nearest")
        axes[row, 1].set_xticks([])
        axes[row, 1].set_yticks([])
        _show(axes[row, 2], overlay(images[row], heatmaps[row], alpha))
    for col, name in enumerate(("image", "heatmap", "overlay")):
        axes[0, col].set_title(name, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def overlay_png(
    image, heatmap, path, alpha: float = 0.5, min_side: int = 224, label: str | None = None
) -> Path:
    """One overlay image, enlarged by whole-pixel repetition to at least ``min_side`` px.

    Args:
        label: written in a band above the image (e.g. the prediction and its score).
    """
    rgb = overlay(image, heatmap, alpha)
    scale = max(1, -(-min_side // min(rgb.shape[:2])))
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    if label:
        rgb = _with_label_band(rgb, label)
    plt.imsave(path, rgb)
    return Path(path)


LABEL_BAND_PX = 22


def _with_label_band(rgb: np.ndarray, label: str) -> np.ndarray:
    """``rgb`` (float 0..1 or uint8) below a black band holding ``label`` in white."""
    from PIL import Image, ImageDraw, ImageFont

    pixels = np.asarray(rgb)
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels[..., :3], 0, 1) * 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    canvas = Image.new("RGB", (width, height + LABEL_BAND_PX), (0, 0, 0))
    canvas.paste(Image.fromarray(pixels[..., :3]), (0, LABEL_BAND_PX))
    font = ImageFont.load_default(size=14)
    ImageDraw.Draw(canvas).text((4, 3), label, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def comparison_png(runs: list[str], metrics: dict[str, list[float | None]], path) -> Path:
    """Grouped bars: one group per metric, one bar per run (missing values left out)."""
    names = list(metrics)
    n_runs = max(len(runs), 1)
    width = 0.8 / n_runs
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) * max(1, n_runs / 3)), 4.5), dpi=100)
    x = np.arange(len(names))
    for r, run in enumerate(runs):
        values = [metrics[m][r] for m in names]
        shown = [i for i, v in enumerate(values) if v is not None]
        bars = ax.bar(
            x[shown] + (r - (n_runs - 1) / 2) * width,
            [values[i] for i in shown],
            width,
            label=run,
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_title("run comparison")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def corruption_curves_png(result: dict, path) -> Path:
    """One small panel per corruption: the score per severity, the clean score dashed."""
    names = list(result["scores"])
    columns = min(4, max(1, len(names)))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3 * columns, 2.4 * rows), dpi=100, squeeze=False
    )
    for ax, name in zip(axes.ravel(), names, strict=False):
        ax.plot(result["severities"], result["scores"][name], marker="o")
        ax.axhline(result["clean"], color="gray", linestyle="--", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_xticks(result["severities"])
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.supxlabel("severity")
    fig.supylabel(result["metric"])
    fig.tight_layout()
    return _save(fig, path)


def epsilon_curve_png(result: dict, path) -> Path:
    """FGSM and PGD score per epsilon (0..255 pixel scale), the clean score at 0."""
    fig, ax = plt.subplots(figsize=CURVE_SIZE, dpi=100)
    eps = [0.0, *result["epsilons"]]
    ax.plot(eps, [result["clean"], *result["fgsm"]], marker="o", label="FGSM")
    ax.plot(eps, [result["clean"], *result["pgd"]], marker="s", label="PGD")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epsilon (L-inf, pixel levels of 255)")
    ax.set_ylabel(result["metric"])
    ax.set_title("adversarial robustness")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def deletion_insertion_png(methods: dict, path) -> Path:
    """Deletion and insertion curves (mean class score) side by side, one line per method."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for name, curve in methods.items():
        style = {"linestyle": "--", "color": "gray"} if name == "random" else {}
        left.plot(
            curve["fractions"], curve["deletion"],
            label=f"{name} (AUC {curve['deletion_auc']:.3f})", **style,
        )  # fmt: skip
        right.plot(
            curve["fractions"], curve["insertion"],
            label=f"{name} (AUC {curve['insertion_auc']:.3f})", **style,
        )  # fmt: skip
    for ax, title in (
        (left, "deletion (lower is better)"),
        (right, "insertion (higher is better)"),
    ):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("fraction of pixels removed / revealed")
        ax.set_ylabel("class score")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def randomization_png(result: dict, path) -> Path:
    """Spearman correlation with the trained model's maps as layers are randomised, per method."""
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(result["layers"]) + 2), 4.5), dpi=100)
    x = np.arange(1, len(result["layers"]) + 1)
    for method, values in result["spearman"].items():
        ax.plot(x, values, marker="o", label=method)
    ax.set_xticks(x)
    ax.set_xticklabels(result["layers"], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(-0.2, 1.02)
    ax.set_ylabel("Spearman rank correlation")
    ax.set_title("cascading randomisation (top layer first)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
