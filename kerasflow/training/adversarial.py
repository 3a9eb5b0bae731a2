"""Adversarial examples (FGSM, PGD) against a whole model, their evaluation and adversarial training.

The attacks perturb the model's *input*, pipeline pixels on the 0..255 scale,
so the model's own input scaling (its first layers) is part of what is
attacked, and ``epsilon`` is in pixel levels (4 means at most 4 of 255 per
pixel and channel, an L-inf ball). The attacked loss is the task's
(:meth:`kerasflow.tasks.base.Task.attack_loss`) of the model's logits (the
input of its final softmax or sigmoid), which does not saturate the way the
probabilities do.

- FGSM (Goodfellow et al., 2015): ``x + eps * sign(grad)``, one step.
- PGD (Madry et al., 2018): a uniform random start in the ball, ``steps``
  steps of ``step_size * sign(grad)``, each projected back to the ball and to 0..255.

A report also checks for gradient masking (a model that only looks robust
because its gradients are useless to the attack): PGD, the stronger attack,
must not score more than :data:`MASKING_TOLERANCE` above FGSM at any epsilon,
and at ``large_epsilon`` PGD must bring the score down to at most
:data:`MASKING_FLOOR`.

Example:
    >>> from kerasflow.training import adversarial
    >>> x_adv = adversarial.pgd(model, images, labels, epsilon=4, steps=10, loss=task.attack_loss)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasflow.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

PIXEL_MIN, PIXEL_MAX = 0.0, 255.0
MASKING_TOLERANCE = 0.02  # PGD may score this much above FGSM (random start noise)
MASKING_FLOOR = 0.1  # the most a model may keep at the large epsilon


def logit_model(model: keras.Model) -> keras.Model:
    """The model from its input to its logits (the input of its final softmax/sigmoid)."""
    from kerasflow.training.explain import score_model

    return score_model(model)[0]


def default_step_size(epsilon: float, steps: int) -> float:
    """Madry et al.'s rule: 2.5 x epsilon / steps (every point of the ball is reachable)."""
    return 2.5 * float(epsilon) / max(1, int(steps))


class Attacker:
    """FGSM and PGD against one model with one loss (a compiled gradient step, reused).

    Args:
        model: a model with outputs ``(batch, classes)`` taking 0..255 pixels.
        loss: ``loss(logits, targets) -> per-example loss`` (the task's ``attack_loss``).
    """

    def __init__(self, model: keras.Model, loss: Callable):
        self.logits = logit_model(model)
        self.loss = loss
        self._grad = tf.function(self._gradient_sign, reduce_retracing=True)

    def _gradient_sign(self, x, targets):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(self.logits(x, training=False), tf.float32)
            loss = tf.reduce_sum(self.loss(logits, targets))
        return tf.sign(tape.gradient(loss, x))

    def fgsm(self, images, targets, epsilon: float) -> tf.Tensor:
        """One step of ``epsilon`` along the sign of the loss gradient, clipped to 0..255."""
        x = tf.convert_to_tensor(images, tf.float32)
        step = self._grad(x, targets)
        return tf.clip_by_value(x + float(epsilon) * step, PIXEL_MIN, PIXEL_MAX)

    def pgd(
        self,
        images,
        targets,
        epsilon: float,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        seed=(0, 0),
    ) -> tf.Tensor:
        """``steps`` projected sign-gradient steps inside the L-inf ball of radius ``epsilon``."""
        if steps < 1:
            raise ConfigError(f"PGD needs at least one step. Received: steps={steps}")
        x0 = tf.convert_to_tensor(images, tf.float32)
        eps = float(epsilon)
        size = default_step_size(eps, steps) if step_size is None else float(step_size)
        x = x0
        if random_start and eps > 0:
            noise = tf.random.stateless_uniform(tf.shape(x0), seed, -eps, eps)
            x = tf.clip_by_value(x0 + noise, PIXEL_MIN, PIXEL_MAX)
        for _ in range(int(steps)):
            x = x + size * self._grad(x, targets)
            x = tf.clip_by_value(tf.clip_by_value(x, x0 - eps, x0 + eps), PIXEL_MIN, PIXEL_MAX)
        return x


def fgsm(model, images, targets, epsilon: float, loss: Callable) -> np.ndarray:
    """FGSM adversarial images (see :class:`Attacker`)."""
    return Attacker(model, loss).fgsm(images, targets, epsilon).numpy()


def pgd(model, images, targets, epsilon: float, loss: Callable, **options) -> np.ndarray:
    """PGD adversarial images (see :meth:`Attacker.pgd` for ``steps``, ``step_size``, ...)."""
    return Attacker(model, loss).pgd(images, targets, epsilon, **options).numpy()


def _eps_key(epsilon: float) -> str:
    return f"eps{float(epsilon):g}"


def evaluate_attacks(model, data, split: str, task, contract: dict, section, seed: int = 0) -> dict:
    """The task's headline score of a split under FGSM and PGD at each epsilon.

    Args:
        section: the config's ``evaluate.adversarial`` (epsilons, large_epsilon,
            pgd_steps, pgd_step_size, images).

    Returns:
        ``{"metric", "clean", "epsilons", "fgsm": [...], "pgd": [...],
        "large_epsilon", "pgd_large", "gradient_masking": {...}, ...}``.
    """
    if not task.adversarial:
        raise ModelError(f"Adversarial evaluation is not defined for task {task.name!r}.")
    attacker = Attacker(model, task.attack_loss)
    epsilons = [float(e) for e in section.epsilons]
    large = float(section.large_epsilon)
    limit = section.images
    runs = [("fgsm", e) for e in epsilons] + [("pgd", e) for e in [*epsilons, large]]
    outputs: dict = {run: [] for run in runs}
    clean: list = []
    seen = 0
    for batch, (x, y) in enumerate(data.dataset(split, training=False)):
        if limit is not None and seen >= limit:
            break
        if limit is not None:
            x, y = x[: limit - seen], y[: limit - seen]
        seen += int(x.shape[0])
        x = tf.cast(x, tf.float32)
        clean.append(np.asarray(model(x, training=False)))
        for method, eps in runs:
            if method == "fgsm":
                adv = attacker.fgsm(x, y, eps)
            else:
                adv = attacker.pgd(
                    x, y, eps, section.pgd_steps, section.pgd_step_size, seed=(seed, batch)
                )
            outputs[(method, eps)].append(np.asarray(model(adv, training=False)))
    targets = np.asarray(data.labels(split))[:seen]
    metric = task.headline

    def score(parts):
        return float(task.report(targets, np.concatenate(parts), contract)[metric])

    fgsm_scores = [score(outputs[("fgsm", e)]) for e in epsilons]
    pgd_scores = [score(outputs[("pgd", e)]) for e in epsilons]
    pgd_large = score(outputs[("pgd", large)])
    return {
        "metric": metric,
        "num_examples": seen,
        "clean": score(clean),
        "epsilons": epsilons,
        "fgsm": fgsm_scores,
        "pgd": pgd_scores,
        "pgd_steps": int(section.pgd_steps),
        "pgd_step_size": section.pgd_step_size,
        "large_epsilon": large,
        "pgd_large": pgd_large,
        "gradient_masking": masking_check(epsilons, fgsm_scores, pgd_scores, pgd_large),
    }


def masking_check(epsilons, fgsm_scores, pgd_scores, pgd_large: float) -> dict:
    """Signs of gradient masking: PGD above FGSM at some epsilon, or no collapse at a large one."""
    reasons = [
        f"PGD {p:.3f} > FGSM {f:.3f} + {MASKING_TOLERANCE:g} at epsilon {e:g}"
        for e, f, p in zip(epsilons, fgsm_scores, pgd_scores, strict=True)
        if p > f + MASKING_TOLERANCE
    ]
    if pgd_large > MASKING_FLOOR:
        reasons.append(f"PGD leaves {pgd_large:.3f} (> {MASKING_FLOOR:g}) at the large epsilon")
    return {
        "suspected": bool(reasons),
        "reasons": reasons,
        "tolerance": MASKING_TOLERANCE,
        "floor": MASKING_FLOOR,
    }


def scalar_metrics(result: dict, prefix: str = "test_") -> dict[str, float]:
    """``test_fgsm_eps4_accuracy``, ``test_pgd_eps4_accuracy``, ... and the masking flag."""
    metric = result["metric"]
    out = {}
    for method in ("fgsm", "pgd"):
        for eps, value in zip(result["epsilons"], result[method], strict=True):
            out[f"{prefix}{method}_{_eps_key(eps)}_{metric}"] = value
    out[f"{prefix}pgd_{_eps_key(result['large_epsilon'])}_{metric}"] = result["pgd_large"]
    out[f"{prefix}adversarial_gradient_masking"] = float(result["gradient_masking"]["suspected"])
    return out


# ------------------------------------------------------------------ training
def install(model: keras.Model, task, section) -> keras.Model:
    """Make ``model.fit`` train on a mix of clean and attacked images (``train.adversarial``).

    Each training batch has its first ``ratio`` of images replaced by their
    FGSM or PGD versions (attacked at the current weights, inference mode),
    then the model's own ``train_step`` runs on it: loss, metrics, optimizer
    and every callback stay those of a normal fit. Nothing is saved with the
    model: the replaced step lives on this instance only.

    Raises:
        ConfigError: the task has no attack loss (adversarial training needs
            classification or multilabel).
    """
    if not task.adversarial:
        raise ConfigError(
            f"train.adversarial is set, but experiment.task {task.name!r} has no adversarial "
            "attack; it is available for classification and multilabel. Remove train.adversarial."
        )
    attacker = Attacker(model, task.attack_loss)
    original = model.train_step
    eps, ratio = float(section.epsilon), float(section.ratio)

    def train_step(data):
        x, y = data[0], data[1]
        x = tf.cast(x, tf.float32)
        if section.method == "fgsm":
            adv = attacker.fgsm(x, y, eps)
        else:
            seed = tf.cast(model.optimizer.iterations, tf.int32)
            adv = attacker.pgd(
                x, y, eps, section.steps, section.step_size, seed=tf.stack([seed, 17])
            )
        n = tf.shape(x)[0]
        k = tf.cast(tf.round(tf.cast(n, tf.float32) * ratio), tf.int32)
        mixed = tf.concat([tf.stop_gradient(adv[:k]), x[k:]], axis=0)
        return original((mixed, y, *data[2:]))

    model.train_step = train_step
    return model
