"""A training run with ``evaluate.robustness`` and ``train.adversarial``: the figures reach MLflow."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

import kerasflow
from tests.conftest import overrides_for

pytestmark = pytest.mark.slow


def test_a_run_logs_robustness_metrics_and_trains_adversarially(store_dir, tracking_uri):
    cfg = kerasflow.load_config(
        None,
        overrides_for(
            store_dir,
            tracking_uri,
            "robust-run",
            "train.verbose=0",
            "train.epochs=2",
            "train.explain_images=0",
            "train.adversarial={method: fgsm, epsilon: 4, ratio: 0.5}",
            "evaluate.robustness=true",
            "evaluate.corruption.names=[gaussian_noise, contrast]",
            "evaluate.corruption.severities=[1, 5]",
            "evaluate.adversarial.epsilons=[4]",
            "evaluate.adversarial.pgd_steps=3",
            "evaluate.adversarial.images=64",
            "evaluate.faithfulness.methods=[gradcam]",
            "evaluate.faithfulness.images=8",
            "evaluate.faithfulness.steps=5",
            "evaluate.faithfulness.randomization_images=0",
        ),
    )
    result = kerasflow.train(cfg)

    robust = result.report["robustness"]
    corr = robust["corruption"]
    assert set(corr["scores"]) == {"gaussian_noise", "contrast"}
    assert all(len(v) == 2 for v in corr["scores"].values())
    assert corr["clean"] == result.report["accuracy"]
    # the noisiest images score below the clean ones
    assert corr["scores"]["gaussian_noise"][1] < corr["clean"]
    adv = robust["adversarial"]
    assert adv["epsilons"] == [4.0] and len(adv["fgsm"]) == len(adv["pgd"]) == 1
    assert 0.0 <= adv["pgd"][0] <= adv["fgsm"][0] + 0.02
    # the map ranked by Grad-CAM, and the random ranking it must beat
    assert set(result.report["faithfulness"]["methods"]) == {"gradcam", "random"}

    run = MlflowClient(tracking_uri).get_run(result.run_id)
    metrics = run.data.metrics
    for name in (
        "test_corruption_mean_accuracy",
        "test_corruption_gaussian_noise_accuracy",
        "test_fgsm_eps4_accuracy",
        "test_pgd_eps4_accuracy",
        "explain_gradcam_deletion_auc",
        "explain_gradcam_insertion_auc",
    ):
        assert name in metrics, (name, sorted(metrics))
    assert metrics["test_pgd_eps4_accuracy"] == pytest.approx(adv["pgd"][0])
    assert metrics["test_corruption_mean_accuracy"] == pytest.approx(corr["mean"])
    assert run.data.params["train.adversarial.method"] == "fgsm"

    # the report file the run logged carries the same figures
    stored = json.loads((result.work_dir / "artifacts" / "evaluation_test.json").read_text())
    assert stored["robustness"]["corruption"]["mean"] == pytest.approx(corr["mean"])
