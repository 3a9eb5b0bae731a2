"""Evaluation report: every metric against scikit-learn, the figures, the HTML page, the run's files."""

from __future__ import annotations

import base64
import json
import re
import struct

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from kerasflow import tasks
from kerasflow.tasks import classification as cls
from kerasflow.tasks import curves, plots
from kerasflow.tasks import segmentation as seg
from kerasflow.tasks.base import predict
from kerasflow.training import evaluate as ev

CLS, SEG, DET = tasks.get("classification"), tasks.get("segmentation"), tasks.get("detection")

TOL = 1e-9


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG file's IHDR header; fails if the file is not a PNG."""
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def synthetic_predictions(n=400, k=5, seed=0, skill=1.2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def preds():
    y, p = synthetic_predictions()
    names = [f"c{i}" for i in range(p.shape[1])]
    return y, p, names, cls.classification_report(y, p, names)


# ------------------------------------------------------------------ classification
def test_accuracy_topk_and_confusion_match_sklearn(preds):
    y, p, names, r = preds
    pred = p.argmax(1)
    assert abs(r["accuracy"] - skm.accuracy_score(y, pred)) < TOL
    for k in (3,):
        assert abs(r[f"top{k}_accuracy"] - skm.top_k_accuracy_score(y, p, k=k)) < TOL
    assert "top5_accuracy" not in r  # k must be below the number of classes
    cm = skm.confusion_matrix(y, pred, labels=range(len(names)))
    np.testing.assert_array_equal(r["confusion_matrix"], cm)
    np.testing.assert_allclose(
        r["confusion_matrix_normalized"],
        skm.confusion_matrix(y, pred, labels=range(len(names)), normalize="true"),
        atol=TOL,
    )


def test_precision_recall_f1_match_sklearn(preds):
    y, p, names, r = preds
    pred = p.argmax(1)
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    for i, name in enumerate(names):
        c = r["per_class"][name]
        assert abs(c["precision"] - pr[i]) < TOL
        assert abs(c["recall"] - rc[i]) < TOL
        assert abs(c["f1"] - f1[i]) < TOL
        assert c["support"] == sup[i]
    for avg in ("macro", "weighted"):
        pa, ra, fa, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert abs(r[f"{avg}_precision"] - pa) < TOL
        assert abs(r[f"{avg}_recall"] - ra) < TOL
        assert abs(r[f"{avg}_f1"] - fa) < TOL


def test_roc_auc_and_average_precision_match_sklearn(preds):
    y, p, names, r = preds
    onehot = np.eye(len(names))[y]
    aucs = skm.roc_auc_score(onehot, p, average=None)
    aps = skm.average_precision_score(onehot, p, average=None)
    for i, name in enumerate(names):
        assert abs(r["per_class"][name]["roc_auc"] - aucs[i]) < TOL
        assert abs(r["per_class"][name]["average_precision"] - aps[i]) < TOL
    macro = skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert abs(r["macro_roc_auc"] - macro) < TOL
    assert abs(r["macro_average_precision"] - skm.average_precision_score(onehot, p)) < TOL


def test_roc_curve_points_match_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * y, 1)  # many tied scores
    fpr, tpr, auc = curves.roc_curve(y, scores)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=TOL)
    np.testing.assert_allclose(tpr, sk_tpr, atol=TOL)
    assert abs(auc - skm.roc_auc_score(y, scores)) < TOL
    assert (
        abs(curves.precision_recall_curve(y, scores)[2] - skm.average_precision_score(y, scores))
        < TOL
    )


def test_auc_undefined_for_a_class_without_examples():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    r = cls.classification_report(y, p, ["a", "b", "c"])
    assert r["per_class"]["c"]["roc_auc"] is None
    assert r["per_class"]["c"]["average_precision"] is None
    assert r["per_class"]["a"]["roc_auc"] == 1.0
    assert r["macro_roc_auc"] == 1.0  # mean over the classes that have positives
    assert "test_macro_roc_auc" in CLS.scalar_metrics(r)


def test_expected_calibration_error_hand_computed():
    # Confidences 0.95 (right), 0.85 (wrong), 0.55 and 0.45 (both right), 10 bins.
    p = np.array([[0.95, 0.05], [0.85, 0.15], [0.45, 0.55], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    calib = curves.calibration(y, p, bins=10)
    # bin (0.9, 1]: acc 1, conf .95; bin (.8, .9]: acc 0, conf .85; bin (.5, .6]: acc 1, conf .55
    expected = 0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.45
    assert abs(calib["expected_calibration_error"] - expected) < TOL
    assert abs(calib["maximum_calibration_error"] - 0.85) < TOL
    assert calib["bin_counts"] == [0, 0, 0, 0, 0, 2, 0, 0, 1, 1]
    assert calib["bin_accuracy"][5] == 1.0 and calib["bin_accuracy"][0] is None


def test_expected_calibration_error_matches_sklearn_calibration_curve(preds):
    y, p, _, r = preds
    conf, correct = p.max(1), (p.argmax(1) == y).astype(int)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=15, strategy="uniform")
    counts = np.array(r["calibration"]["bin_counts"])
    weights = counts[counts > 0] / len(y)
    sk_ece = float(np.sum(weights * np.abs(prob_true - prob_pred)))
    assert abs(r["expected_calibration_error"] - sk_ece) < TOL
    assert r["expected_calibration_error"] > 0.01


def test_most_confident_mistakes_order():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    # wrong: 1 (conf .8), 2 (.6), 3 (.7)
    assert cls.most_confident_mistakes(y, p).tolist() == [1, 3, 2]
    assert cls.most_confident_mistakes(y, p, count=1).tolist() == [1]


# ------------------------------------------------------------------ segmentation
def test_segmentation_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 4, (3, 12, 10))
    probs = rng.random((3, 12, 10, 4))
    probs[..., 0] += (masks == 0) * 0.8
    probs[..., 2] += (masks == 2) * 0.5
    names = ["bg", "a", "b", "c"]
    r = seg.segmentation_report(masks, probs, names)
    yt, yp = masks.ravel(), probs.argmax(-1).ravel()
    iou = skm.jaccard_score(yt, yp, average=None)
    dice = skm.f1_score(yt, yp, average=None)
    for i, n in enumerate(names):
        assert abs(r["per_class"][n]["iou"] - iou[i]) < TOL
        assert abs(r["per_class"][n]["dice"] - dice[i]) < TOL
    assert abs(r["mean_iou"] - skm.jaccard_score(yt, yp, average="macro")) < TOL
    assert abs(r["mean_dice"] - dice.mean()) < TOL
    assert abs(r["pixel_accuracy"] - skm.accuracy_score(yt, yp)) < TOL
    np.testing.assert_array_equal(r["confusion_matrix"], skm.confusion_matrix(yt, yp))


# ------------------------------------------------------------------ files
def _parse_html(text: str) -> dict:
    """The page's title and any tags left open (a well-formed page has none)."""
    from html.parser import HTMLParser

    void = {"meta", "img", "br", "hr", "link", "input"}

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.title, self.in_title = [], "", False

        def handle_starttag(self, tag, attrs):
            if tag not in void:
                self.stack.append(tag)
            self.in_title = tag == "title"

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
            self.stack.pop()
            self.in_title = False

        def handle_data(self, data):
            if self.in_title:
                self.title += data

    parser = Parser()
    parser.feed(text)
    parser.close()
    return {"title": parser.title, "unclosed": parser.stack}


class FakePrepared:
    """The parts of PreparedData that evaluation uses, over in-memory arrays."""

    def __init__(self, images, labels, class_names):
        self.images, self._labels, self.class_names = images, labels, class_names
        self.data_config = None
        self.input_shape = images.shape[1:]

    def dataset(self, split, training=False, batch=True):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((self.images, self._labels))
        return ds.batch(8) if batch else ds

    def labels(self, split):
        return self._labels

    def size(self, split):
        return len(self._labels)


@pytest.fixture(scope="module")
def tiny_classifier():
    from kerasflow import models

    rng = np.random.default_rng(0)
    images = rng.random((24, 16, 16, 1)).astype("float32")
    labels = np.arange(24) % 3
    model = models.build("simple_cnn", (16, 16, 1), 3, width=4, dense_units=8, depth=1)
    return model, FakePrepared(images, labels, ["zero", "one", "two"])


def test_evaluate_split_writes_json_pngs_and_html(tiny_classifier, tmp_path):
    model, prepared = tiny_classifier
    report = ev.evaluate_split(
        model,
        prepared,
        "test",
        CLS,
        {"class_names": prepared.class_names},
        out_dir=tmp_path,
        run_id="abc123run",
    )
    saved = json.loads((tmp_path / "evaluation_test.json").read_text())
    assert saved["accuracy"] == report["accuracy"] and saved["run_id"] == "abc123run"
    for name in ("roc_curves_test.png", "pr_curves_test.png", "reliability_test.png"):
        assert png_size(tmp_path / name) == (600, 500)
    assert png_size(tmp_path / "confusion_matrix_test.png") == (400, 400)
    assert png_size(tmp_path / "confusion_matrix_test_normalized.png") == (400, 400)
    wrong = cls.most_confident_mistakes(
        prepared.labels("test"), predict(model, prepared.dataset("test"))
    )
    if len(wrong):
        cols = min(4, len(wrong))
        rows = -(-min(len(wrong), cls.WRONG_GRID_SIZE) // 4)
        expected = (
            round(plots.GRID_CELL * cols * 100),
            round((plots.GRID_CELL * rows + 0.4) * 100),
        )
        assert png_size(tmp_path / "confident_mistakes_test.png") == expected
    html = (tmp_path / "report_test.html").read_text()
    assert "abc123run" in html and html.startswith("<!DOCTYPE html>")
    parsed = _parse_html(html)
    assert "abc123run" in parsed["title"] and parsed["unclosed"] == []
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5 + (1 if len(wrong) else 0)
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html  # self-contained
    assert '<td class="name">zero</td>' in html


def test_run_explanations_are_added_to_the_report(tiny_classifier, tmp_path):
    from kerasflow.config import TrainConfig

    model, prepared = tiny_classifier
    contract = {"class_names": prepared.class_names}
    report = ev.evaluate_split(model, prepared, "test", CLS, contract, out_dir=tmp_path)
    cfg = TrainConfig(explain_images=3, explain_method="gradcam++")
    written = ev.add_run_explanations(model, prepared, report, tmp_path, CLS, cfg, run_id="r-42")
    assert [p.name for p in written] == ["explanations_test_gradcampp.png"]
    w, h = png_size(written[0])
    assert (w, h) == (round(plots.GRID_CELL * 3 * 100), round((plots.GRID_CELL * 3 + 0.3) * 100))
    html = (tmp_path / "report_test.html").read_text()
    assert "r-42" in html and "Explanations (gradcampp)" in html
    off = ev.add_run_explanations(
        model, prepared, report, tmp_path / "off", CLS, TrainConfig(explain_images=0)
    )
    assert off == []


def test_segmentation_split_writes_grid(tmp_path):
    from kerasflow import models

    rng = np.random.default_rng(0)
    images = rng.random((5, 16, 16, 1)).astype("float32")
    masks = (images[..., 0] > 0.5).astype("int32")
    model = models.build("unet", (16, 16, 1), 2, depth=2, width=4)
    prepared = FakePrepared(images, masks, ["bg", "fg"])
    report = ev.evaluate_split(
        model, prepared, "test", SEG, {"class_names": prepared.class_names}, out_dir=tmp_path
    )
    assert 0 <= report["mean_iou"] <= 1
    w, h = png_size(tmp_path / "segmentation_examples_test.png")
    assert (w, h) == (round(plots.GRID_CELL * 3 * 100), round((plots.GRID_CELL * 4 + 0.3) * 100))
    html = (tmp_path / "report_test.html").read_text()
    assert "mean IoU" in html and "(not tracked)" in html
    assert not (tmp_path / "roc_curves_test.png").exists()


# ------------------------------------------------------------------ a real run
def test_detection_report_page_shows_map_per_class_ap_and_the_box_grid(tmp_path):
    from PIL import Image

    from kerasflow.tasks.detection.average_precision import mean_average_precision

    # Two images; "ring" is found exactly; "bar" is found once at IoU 0.6 and missed
    # once (recall 0.5: 51 of COCO's 101 recall points at precision 1, so AP@0.5 is
    # 51/101, and 0 at IoU 0.75); "dot" has no true boxes (AP undefined: a dash).
    gts = [
        (np.array([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.4, 0.6]]), np.array([0, 1])),
        (np.array([[0.2, 0.2, 0.6, 0.6]]), np.array([1])),
    ]
    dets = [
        (np.array([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.4, 0.36]]), np.array([0.9, 0.8]), [0, 1]),
        (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)),
    ]
    report = mean_average_precision(dets, gts, 3, class_names=["ring", "bar", "dot"])
    assert report["per_class"]["bar"]["ap50"] == pytest.approx(51 / 101)
    report.update(split="test", task="detection", num_examples=2, loss=1.25)
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "predictions_test.png")
    page = ev.write_report_files(report, tmp_path, "test", DET, run_id="det-run")
    html = page.read_text()
    assert _parse_html(html)["unclosed"] == [] and "det-run" in html
    cells = [re.findall(r">([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", html)]
    rows = {c[0]: c[1:] for c in cells if c}  # header rows have no <td>
    assert rows["mAP@0.5"] == [f"{report['map50']:.4f}"] == [f"{(1 + 51 / 101) / 2:.4f}"]
    assert rows["mAP@[0.5:0.95] (COCO)"] == [f"{report['map']:.4f}"]
    assert rows["ring"] == ["1.0000", "1.0000", "1.0000", "1", "1"]
    assert rows["bar"][:2] == [f"{51 / 101:.4f}", "0.0000"] and rows["bar"][3:] == ["2", "1"]
    assert rows["dot"] == ["–", "–", "–", "0", "0"]
    assert "Predicted boxes (true boxes in white)" in html
    (grid,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert base64.b64decode(grid) == (tmp_path / "predictions_test.png").read_bytes()
    assert json.loads((tmp_path / "evaluation_test.json").read_text())["run_id"] == "det-run"


def test_training_run_logs_report_html_and_explanations(digits_result):
    from mlflow.tracking import MlflowClient

    result = digits_result
    for name in (
        "report_test.html",
        "roc_curves_test.png",
        "pr_curves_test.png",
        "reliability_test.png",
        "confident_mistakes_test.png",
        "explanations_test_gradcam.png",
    ):
        assert name in result.artifacts
    html = (result.work_dir / "artifacts" / "report_test.html").read_text()
    assert result.run_id in html
    client = MlflowClient(result.config.tracking.uri)
    logged = {f.path for f in client.list_artifacts(result.run_id)}
    assert {"report_test.html", "explanations_test_gradcam.png", "roc_curves_test.png"} <= logged
    run = client.get_run(result.run_id)
    r = result.report
    assert run.data.metrics["test_macro_roc_auc"] == pytest.approx(r["macro_roc_auc"], abs=1e-12)
    assert 0.95 < r["macro_roc_auc"] <= 1.0
    assert 0 <= r["expected_calibration_error"] < 0.1
    assert run.data.metrics["test_expected_calibration_error"] == pytest.approx(
        r["expected_calibration_error"], abs=1e-12
    )


def test_cli_evaluate_prints_html_path(digits_result, tmp_path):
    from click.testing import CliRunner

    from kerasflow.cli import cli

    out = tmp_path / "ev"
    uri = f"runs:/{digits_result.run_id}/model"
    env = {"MLFLOW_TRACKING_URI": digits_result.config.tracking.uri}
    res = CliRunner().invoke(cli, ["evaluate", uri, "--out", str(out), "--log-to-run"], env=env)
    assert res.exit_code == 0, res.output
    assert f"HTML report:       {out / 'report_test.html'}" in res.output
    html = (out / "report_test.html").read_text()
    assert digits_result.run_id in html and "Explanations (gradcam)" in html
    assert (out / "explanations_test_gradcam.png").is_file()
    saved = json.loads((out / "evaluation_test.json").read_text())
    assert saved["accuracy"] == pytest.approx(digits_result.report["accuracy"], abs=1e-12)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(digits_result.config.tracking.uri)
    logged = {f.path for f in client.list_artifacts(digits_result.run_id, "evaluation/test")}
    assert "evaluation/test/report_test.html" in logged
