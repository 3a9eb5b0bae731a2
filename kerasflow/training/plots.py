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
