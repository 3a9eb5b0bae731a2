"""FGSM and PGD against a hand-computed linear case; the masking check; adversarial training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasflow import tasks
from kerasflow.config import AdversarialTrainingConfig
from kerasflow.errors import ConfigError
from kerasflow.training import adversarial

CLS = tasks.get("classification")

# Logits z = x . W + b of a flattened 2 x 2 x 1 image; columns are the classes.
W = np.array([[1.0, 0.0], [-1.0, 1.0], [0.5, 0.5], [0.0, 2.0]], np.float32)


def linear_model(name="lin"):
    inputs = keras.Input((2, 2, 1), name=f"{name}_input")
    x = keras.layers.Flatten()(inputs)
    logits = keras.layers.Dense(2, name=f"{name}_logits")(x)
    probs = keras.layers.Activation("softmax", name=f"{name}_probabilities")(logits)
    model = keras.Model(inputs, probs, name=name)
    model.get_layer(f"{name}_logits").set_weights([W, np.zeros(2, np.float32)])
    return model


def test_fgsm_and_pgd_match_the_hand_computed_step_of_a_linear_model():
    # Cross-entropy of class 0: d loss / d x = W (p - e0) = p1 (W[:, 1] - W[:, 0]),
    # so sign(grad) = sign([-1, 2, 0, 2]) = [-1, +1, 0, +1] whatever p1 > 0 is.
    x = np.array([10.0, 20.0, 30.0, 253.0], np.float32).reshape(1, 2, 2, 1)
    y = np.array([0])
    model = linear_model()
    expected = np.array([6.0, 24.0, 30.0, 255.0]).reshape(1, 2, 2, 1)  # 253 + 4 clips to 255
    got = adversarial.fgsm(model, x, y, 4.0, CLS.attack_loss)
    np.testing.assert_allclose(got, expected)
    one_step = adversarial.pgd(
        model, x, y, 4.0, CLS.attack_loss, steps=1, step_size=4.0, random_start=False
    )
    np.testing.assert_allclose(one_step, expected)
    # Three steps of 3 from a random start: the gradient sign never changes, so every
    # moving pixel ends on the ball's edge; the zero-gradient pixel keeps its start.
    many = adversarial.pgd(model, x, y, 4.0, CLS.attack_loss, steps=3, step_size=3.0, seed=(3, 4))
    np.testing.assert_allclose(many.ravel()[[0, 1, 3]], [6.0, 24.0, 255.0])
    assert abs(many.ravel()[2] - 30.0) <= 4.0
    assert np.abs(many - x).max() <= 4.0 + 1e-5
    # The attack does what it is for: the true class's logit margin falls, 4 x 4 = 16 lower
    # (margin z0 - z1 = x . [1, -2, 0, -2]: -536 before, -552 after, 255 clipped).
    logits = adversarial.logit_model(model)
    margin = [float(np.diff(np.asarray(logits(v))[0])[0]) * -1 for v in (x, got)]
    assert margin == pytest.approx([-536.0, -552.0])


def test_multilabel_attack_loss_pushes_every_label_away():
    ml = tasks.get("multilabel")
    logits = np.array([[2.0, -1.0]], np.float32)
    loss = float(ml.attack_loss(logits, np.array([[1, 0]]))[0])
    expected = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_masking_check_flags_pgd_above_fgsm_and_no_collapse():
    ok = adversarial.masking_check([2, 4], [0.8, 0.5], [0.79, 0.4], 0.0)
    assert not ok["suspected"] and ok["reasons"] == []
    bad = adversarial.masking_check([2, 4], [0.8, 0.5], [0.9, 0.4], 0.6)
    assert bad["suspected"] and len(bad["reasons"]) == 2
    assert "epsilon 2" in bad["reasons"][0] and "large epsilon" in bad["reasons"][1]


def test_adversarial_training_step_fits_on_attacked_images():
    """One step of fit: the loss logged is that of the batch with its first ``ratio`` attacked."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 2, 2, 1)).astype(np.float32)
    y = (x.reshape(16, -1) @ W).argmax(axis=1)  # the model is right on every image
    ce = keras.losses.SparseCategoricalCrossentropy()

    def one_step(section):
        model = linear_model()
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
        if section is not None:
            adversarial.install(model, CLS, section)
        fit = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        return fit.history["loss"][0], model

    clean, model = one_step(None)
    assert clean == pytest.approx(float(ce(y, model(x))), abs=1e-6)
    attacker = adversarial.Attacker(model, CLS.attack_loss)
    for method, ratio in (("fgsm", 1.0), ("pgd", 0.5)):
        section = AdversarialTrainingConfig(method=method, epsilon=96, ratio=ratio, steps=2)
        logged, _ = one_step(section)
        if method == "fgsm":
            adv = attacker.fgsm(x, y, 96).numpy()
        else:  # the training step seeds PGD with (optimizer step, 17): step 0 here
            adv = attacker.pgd(x, y, 96, 2, seed=(0, 17)).numpy()
        k = round(16 * ratio)
        mixed = np.concatenate([adv[:k], x[k:]])
        assert logged == pytest.approx(float(ce(y, model(mixed))), rel=1e-5), method
        assert logged > clean + 0.1, method
    with pytest.raises(ConfigError, match="classification and multilabel"):
        adversarial.install(linear_model(), tasks.get("segmentation"), AdversarialTrainingConfig())


def test_lower_is_better_for_deletion_auc_randomization_and_masking():
    from kerasflow.tasks.base import metric_mode

    assert metric_mode("explain_gradcam_deletion_auc") == "min"
    assert metric_mode("explain_gradcam_randomization_spearman") == "min"
    assert metric_mode("test_adversarial_gradient_masking") == "min"
    assert metric_mode("explain_gradcam_insertion_auc") == "max"
    assert metric_mode("test_pgd_eps4_accuracy") == "max"


def test_spearman_uses_average_ranks_for_ties():
    from kerasflow.training.faithfulness import average_ranks, spearman

    np.testing.assert_allclose(average_ranks([3.0, 1.0, 3.0, 2.0]), [2.5, 0.0, 2.5, 1.0])
    a = np.array([[0.0, 0.0], [1.0, 5.0]])
    assert spearman(a, a * 2 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones_like(a)) == 0.0
    # Ties at zero: ranks [0.5, 0.5, 2, 3] vs [0, 1, 2, 3] -> Pearson of the ranks.
    expected = np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1]
    assert spearman(a, np.array([[0.0, 0.1], [1.0, 5.0]])) == pytest.approx(expected)


def test_epoch_metrics_put_robustness_scores_in_the_epoch_logs():
    """``evaluate.epoch_metrics``: val_pgd_eps4_accuracy etc. each epoch (a tuner objective)."""
    import tensorflow as tf

    from kerasflow.config import EvaluateConfig
    from kerasflow.training.robustness import EpochRobustness

    class Data:  # the parts of prepared data that the callback reads
        class_names = ["a", "b"]

        def dataset(self, split, training=None, batch=True):
            ds = tf.data.Dataset.from_tensor_slices((x, y))
            return ds.batch(8) if batch else ds

        def labels(self, split):
            return y

        def size(self, split):
            return len(y)

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (16, 2, 2, 1)).astype(np.float32)
    y = (x.reshape(16, -1) @ W).argmax(axis=1)
    section = EvaluateConfig(epoch_metrics=["pgd_eps4", "corruption_mean"])
    section.corruption.names, section.corruption.severities = ["contrast"], [5]
    model = linear_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    callback = EpochRobustness(Data(), "validation", CLS, section)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback]).history
    attack = section.adversarial.model_copy(update={"epsilons": [4.0]})
    expected = adversarial.evaluate_attacks(
        model, Data(), "validation", CLS, {"class_names": ["a", "b"]}, attack
    )
    assert history["val_pgd_eps4_accuracy"] == [expected["pgd"][0]]
    assert 0.0 <= history["val_corruption_mean_accuracy"][0] <= 1.0
    assert "val_fgsm_eps4_accuracy" not in history  # only what was asked for
    with pytest.raises(ValueError, match="pgd_eps4"):
        EvaluateConfig(epoch_metrics=["pgd4"])
