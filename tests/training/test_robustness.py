"""Robustness and faithfulness of the trained digits model (the issue's acceptance checks)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from kerasflow import tasks
from kerasflow.config import EvaluateConfig
from kerasflow.training import robustness

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_robustness(digits_result, tmp_path_factory):
    """Every part with the defaults on the digits test split, once (timings in the report)."""
    cfg = digits_result.config
    task = tasks.get(cfg.experiment.task)
    data = task.training_data(task.prepare(cfg.data, cfg.experiment.seed), digits_result.model)
    contract = task.contract(digits_result.model, data)
    report = {"split": "test", "task": task.name}
    out = tmp_path_factory.mktemp("robust")
    start = time.process_time()
    robustness.add_robustness(
        digits_result.model, data, report, out, task, contract, EvaluateConfig(robustness=True)
    )
    report["cpu_seconds_total"] = time.process_time() - start
    return report, out


def test_clean_score_equals_the_standard_report_and_corruptions_degrade(
    digits_result, digits_robustness
):
    report, _ = digits_robustness
    corr = report["robustness"]["corruption"]
    assert corr["metric"] == "accuracy"
    assert corr["clean"] == digits_result.report["accuracy"]  # the same images, scored alike
    assert set(corr["scores"]) == {
        "gaussian_noise", "shot_noise", "gaussian_blur", "defocus_blur",
        "jpeg", "brightness", "contrast", "pixelate",
    }  # fmt: skip
    one_image = 1 / digits_result.report["num_examples"]
    for name in ("gaussian_noise", "shot_noise", "gaussian_blur", "defocus_blur"):
        scores = [corr["clean"], *corr["scores"][name]]
        # Falls with severity; a mild step may let one image of the ~360 flip back.
        assert all(b <= a + one_image for a, b in zip(scores, scores[1:], strict=False)), (
            name,
            scores,
        )
        assert scores[-1] < corr["clean"] - 0.1, (name, scores)
    values = [v for s in corr["scores"].values() for v in s]
    assert corr["mean"] == pytest.approx(np.mean(values))
    assert corr["relative"] == pytest.approx(corr["mean"] / corr["clean"])


def test_pgd_is_at_most_fgsm_and_breaks_the_model_at_a_large_epsilon(digits_robustness):
    adv = digits_robustness[0]["robustness"]["adversarial"]
    assert adv["epsilons"] == [1.0, 2.0, 4.0, 8.0] and adv["num_examples"] > 300
    for eps, f, p in zip(adv["epsilons"], adv["fgsm"], adv["pgd"], strict=True):
        assert p <= f, (eps, f, p)
        assert p <= adv["clean"]
    assert adv["pgd"][-1] < adv["pgd"][0]
    assert adv["pgd_large"] <= 0.02  # epsilon 32: ~0
    assert adv["gradient_masking"]["suspected"] is False


def test_gradcam_and_ig_delete_faster_than_a_random_ranking(digits_robustness):
    faith = digits_robustness[0]["faithfulness"]
    methods = faith["methods"]
    assert set(methods) == {"gradcam", "gradcam++", "saliency", "integrated_gradients", "random"}
    for name in ("gradcam", "integrated_gradients"):
        assert methods[name]["deletion_auc"] < methods["random"]["deletion_auc"] - 0.02, name
        assert methods[name]["insertion_auc"] > methods["random"]["insertion_auc"], name
    curve = methods["gradcam"]
    assert len(curve["deletion"]) == faith["steps"] + 1
    assert curve["deletion"][0] == pytest.approx(curve["insertion"][-1], abs=1e-6)  # the image


def test_cascading_randomisation_lowers_the_correlation(digits_result, digits_robustness):
    rand = digits_robustness[0]["faithfulness"]["randomization"]
    layers = rand["layers"]
    assert layers[0] == "simple_cnn_logits" and layers[-1] == "simple_cnn_block1_conv1"
    for method, values in rand["spearman"].items():
        assert len(values) == len(layers)
        half = len(values) // 2
        # Deeper randomisation: less like the trained model's maps.
        assert np.mean(values[half:]) < np.mean(values[:half]), (method, values)
        assert values[-1] < 0.9, (method, values)


def test_report_metrics_html_and_figures(digits_robustness, tmp_path):
    report, out = digits_robustness
    for name in ("corruption_curves", "adversarial", "faithfulness", "randomization"):
        assert (out / f"{name}_test.png").stat().st_size > 5000
    metrics = robustness.scalar_metrics(report)
    corr = report["robustness"]["corruption"]
    assert metrics["test_corruption_mean_accuracy"] == corr["mean"]
    assert metrics["test_corruption_jpeg_accuracy"] == corr["per_corruption"]["jpeg"]
    adv = report["robustness"]["adversarial"]
    assert metrics["test_pgd_eps4_accuracy"] == adv["pgd"][2]
    assert metrics["test_fgsm_eps8_accuracy"] == adv["fgsm"][3]
    assert metrics["test_pgd_eps32_accuracy"] == adv["pgd_large"]
    assert metrics["test_adversarial_gradient_masking"] == 0.0
    faith = report["faithfulness"]["methods"]
    assert metrics["explain_gradcam_deletion_auc"] == faith["gradcam"]["deletion_auc"]
    assert metrics["explain_gradcampp_insertion_auc"] == faith["gradcam++"]["insertion_auc"]
    assert metrics["explain_random_deletion_auc"] == faith["random"]["deletion_auc"]
    assert "explain_integrated_gradients_randomization_spearman" in metrics
    json.dumps(report)  # the report JSON holds all of it
    from kerasflow.tasks import robustness_report

    html = robustness_report.html_section(report)
    assert "Corruption robustness (accuracy)" in html and "severity 5" in html
    assert "No sign of gradient masking" in html and "deletion AUC" in html
    assert "Spearman" in html
    print(
        "robustness cpu seconds:",
        report["robustness"]["cpu_seconds"],
        "total",
        report["cpu_seconds_total"],
    )


def test_cli_evaluate_robustness_logs_metrics_to_the_run(digits_result, tmp_path):
    from click.testing import CliRunner
    from mlflow.tracking import MlflowClient

    from kerasflow.cli import cli

    out = tmp_path / "ev"
    uri = f"runs:/{digits_result.run_id}/model"
    cheap = [
        "evaluate.corruption.names=[gaussian_noise, contrast]",
        "evaluate.corruption.severities=[1, 5]",
        "evaluate.adversarial.epsilons=[4]",
        "evaluate.adversarial.images=64",
        "evaluate.faithfulness.methods=[gradcam]",
        "evaluate.faithfulness.images=4",
        "evaluate.faithfulness.randomization_images=0",
        "train.explain_images=0",
    ]
    args = ["evaluate", uri, "--out", str(out), "--log-to-run", "--robustness"]
    args += [a for c in cheap for a in ("--set", c)]
    env = {"MLFLOW_TRACKING_URI": digits_result.config.tracking.uri}
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    assert "corruption_mean_accuracy" in res.output and "pgd_eps4_accuracy" in res.output
    saved = json.loads((out / "evaluation_test.json").read_text())
    corr = saved["robustness"]["corruption"]
    assert corr["severities"] == [1, 5] and list(corr["scores"]) == ["gaussian_noise", "contrast"]
    assert saved["robustness"]["adversarial"]["num_examples"] == 64
    html = (out / "report_test.html").read_text()
    assert "Corruption robustness: score per severity" in html  # the figure's heading
    assert "Adversarial robustness (accuracy" in html
    run = MlflowClient(digits_result.config.tracking.uri).get_run(digits_result.run_id)
    assert run.data.metrics["test_corruption_mean_accuracy"] == pytest.approx(corr["mean"])
    assert "test_pgd_eps4_accuracy" in run.data.metrics
    assert "explain_gradcam_deletion_auc" in run.data.metrics
