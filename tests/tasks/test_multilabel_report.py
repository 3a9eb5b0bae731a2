"""The multi-label report against scikit-learn, the threshold rule, scalars, figures and HTML."""

from __future__ import annotations

import html
import json
import struct

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)

from kerasflow.errors import DataError
from kerasflow.tasks import multilabel_report as mlr

NAMES = ["cat", "dog", "red car", "none/ever", "x<y>&z"]
EMPTY_LABEL = 3  # the label column without positive examples
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_split(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Labels with one never-positive column and one example without labels; noisy scores.

    Scores are rounded to two decimals so many examples tie, which exercises
    the distinct-score handling of the curves and thresholds.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(NAMES))) < [0.4, 0.25, 0.1, 0.0, 0.5]).astype(int)
    y[0] = 0
    scores = np.clip(0.35 * y + rng.random(y.shape) * 0.65, 0, 1).round(2)
    return y, scores


@pytest.fixture(scope="module")
def val_split():
    return make_split(1)


@pytest.fixture(scope="module")
def test_split():
    return make_split(2)


@pytest.fixture(scope="module")
def chosen(val_split):
    return mlr.choose_thresholds(*val_split)


# ------------------------------------------------------------------ metrics vs scikit-learn
@pytest.mark.parametrize("which", ["default", "chosen", "scalar"])
def test_report_equals_sklearn(which, test_split, chosen):
    y, scores = test_split
    thresholds = {"default": None, "chosen": chosen, "scalar": 0.3}[which]
    cuts = {"default": np.full(5, 0.5), "chosen": chosen, "scalar": np.full(5, 0.3)}[which]
    pred = (scores >= cuts).astype(int)
    r = mlr.multilabel_report(y, scores, NAMES, thresholds=thresholds)

    assert r["num_examples"] == 200 and r["num_labels"] == 5
    assert r["class_names"] == NAMES
    assert r["thresholds"] == pytest.approx(cuts.tolist(), abs=0)
    for avg in ("micro", "macro", "weighted", "samples"):
        p, rc, f, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert r[f"{avg}_precision"] == pytest.approx(p, abs=1e-9)
        assert r[f"{avg}_recall"] == pytest.approx(rc, abs=1e-9)
        assert r[f"{avg}_f1"] == pytest.approx(f, abs=1e-9)
    p, rc, f, s = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    assert r["subset_accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-9)
    assert r["hamming_loss"] == pytest.approx(hamming_loss(y, pred), abs=1e-9)

    aps = []
    for k, name in enumerate(NAMES):
        row = r["per_label"][name]
        assert row["precision"] == pytest.approx(p[k], abs=1e-9)
        assert row["recall"] == pytest.approx(rc[k], abs=1e-9)
        assert row["f1"] == pytest.approx(f[k], abs=1e-9)
        assert row["support"] == s[k] == y[:, k].sum()
        assert row["predicted"] == pred[:, k].sum()
        assert row["true_positives"] == (pred[:, k] & y[:, k]).sum()
        assert row["threshold"] == cuts[k]
        if k == EMPTY_LABEL:
            assert row["support"] == 0 and row["average_precision"] is None
        else:
            expected = average_precision_score(y[:, k], scores[:, k])
            assert row["average_precision"] == pytest.approx(expected, abs=1e-9)
            aps.append(expected)
    assert r["mean_average_precision"] == pytest.approx(np.mean(aps), abs=1e-9)
    assert r["label_cardinality"] == pytest.approx(y.sum(axis=1).mean(), abs=1e-12)
    assert r["predicted_label_cardinality"] == pytest.approx(pred.sum(axis=1).mean(), abs=1e-12)
    assert r["examples_without_labels"] == (y.sum(axis=1) == 0).sum() >= 1
    assert r["examples_without_predictions"] == (pred.sum(axis=1) == 0).sum()
    json.dumps(r)  # JSON-ready: plain floats, ints, lists and None


def test_zero_division_edge_cases_equal_sklearn():
    # Nothing predicted for label 0, nothing true for label 1, a row with neither.
    y = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 0]])
    scores = np.array([[0.1, 0.9, 0.2], [0.2, 0.1, 0.8], [0.0, 0.0, 0.0]])
    pred = (scores >= 0.5).astype(int)
    r = mlr.multilabel_report(y, scores, ["a", "b", "c"])
    for avg in ("micro", "macro", "weighted", "samples"):
        p, rc, f, _ = precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (r[f"{avg}_precision"], r[f"{avg}_recall"], r[f"{avg}_f1"]) == pytest.approx(
            (p, rc, f), abs=1e-9
        )
    # Label "a" is never predicted (precision 0 by convention) yet ranks its positives first.
    assert r["per_label"]["a"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 2,
        "predicted": 0,
        "true_positives": 0,
        "average_precision": 1.0,
        "threshold": 0.5,
    }
    assert r["per_label"]["b"]["average_precision"] is None


def test_cooccurrences_most_frequent_pairs_first():
    y = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]])
    r = mlr.multilabel_report(y, y * 0.9, ["a", "b", "c"])
    assert r["top_cooccurrences"] == [
        {"labels": ["a", "b"], "count": 3},
        {"labels": ["b", "c"], "count": 2},
        {"labels": ["a", "c"], "count": 1},
    ]
    assert mlr.multilabel_report(np.eye(2), np.eye(2), ["a", "b"])["top_cooccurrences"] == []


# ------------------------------------------------------------------ thresholds
def test_choose_thresholds_known_optimum_is_midpoint_below_best_cut():
    # Cuts (score >= s): F1 = 0.5, 0.8, 0.667, 0.857, 0.75, 0.667 -> best cut 0.6,
    # next lower distinct score 0.3 -> threshold 0.45.
    y = np.array([[1, 1, 0, 1, 0, 0]]).T
    s = np.array([[0.9, 0.8, 0.7, 0.6, 0.3, 0.1]]).T
    assert mlr.choose_thresholds(y, s).tolist() == pytest.approx([0.45], abs=1e-15)


def test_choose_thresholds_ties_lowest_score_no_positives_and_adjacent_floats():
    # Column 0: cuts 0.9 and 0.6 both give F1 2/3; the higher cut wins -> midpoint 0.85.
    # Column 1: every example positive -> the lowest score itself.
    # Column 2: no positives -> the default.
    y = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 1, 0]])
    s = np.array([[0.9, 0.4, 0.9], [0.8, 0.3, 0.8], [0.7, 0.25, 0.7], [0.6, 0.2, 0.6]])
    t = mlr.choose_thresholds(y, s, default=0.7)
    assert t.tolist() == pytest.approx([0.85, 0.2, 0.7], abs=1e-15)
    # No float between two adjacent scores: the chosen score itself keeps the decisions.
    low = 0.3
    high = np.nextafter(low, 1.0)
    t = mlr.choose_thresholds([[1], [0]], [[high], [low]])
    assert t[0] == high and ((np.array([high, low]) >= t[0]) == [True, False]).all()


def test_chosen_thresholds_are_f1_optimal_on_validation(val_split, chosen):
    y, scores = val_split
    assert chosen[EMPTY_LABEL] == 0.5
    for k in range(len(NAMES)):
        if k == EMPTY_LABEL:
            continue
        f1_at = lambda t, k=k: f1_score(y[:, k], scores[:, k] >= t, zero_division=0)  # noqa: E731
        best = max(f1_at(s) for s in np.unique(scores[:, k]))
        assert f1_at(chosen[k]) == pytest.approx(best, abs=1e-12)
        assert f1_at(chosen[k]) >= f1_at(0.5)
        # The threshold never sits on a validation score unless nothing lies between.
        below = scores[:, k][scores[:, k] < chosen[k]]
        assert chosen[k] not in scores[:, k] or below.size == 0


# ------------------------------------------------------------------ MLflow scalars
def test_scalar_metrics_keys_values_and_safe_names(test_split, chosen):
    y, scores = test_split
    r = mlr.multilabel_report(y, scores, NAMES, thresholds=chosen)
    m = mlr.scalar_metrics(r, prefix="test_")
    headline = {
        "micro_f1": "micro_f1",
        "macro_f1": "macro_f1",
        "micro_precision": "micro_precision",
        "micro_recall": "micro_recall",
        "macro_precision": "macro_precision",
        "macro_recall": "macro_recall",
        "samples_f1": "samples_f1",
        "subset_accuracy": "subset_accuracy",
        "hamming_loss": "hamming_loss",
        "map": "mean_average_precision",
    }
    safe = ["cat", "dog", "red_car", "none_ever", "x_y__z"]
    expected_keys = {f"test_{k}" for k in headline}
    expected_keys |= {f"test_f1_{n}" for n in safe}
    expected_keys |= {f"test_ap_{n}" for i, n in enumerate(safe) if i != EMPTY_LABEL}
    assert set(m) == expected_keys  # the undefined AP of "none/ever" is left out
    for key, report_key in headline.items():
        assert m[f"test_{key}"] == r[report_key]
    for name, s in zip(NAMES, safe, strict=True):
        assert m[f"test_f1_{s}"] == r["per_label"][name]["f1"]
    assert m["test_ap_red_car"] == r["per_label"]["red car"]["average_precision"]
    assert all(isinstance(v, float) for v in m.values())


def test_scalar_metrics_prefix_and_colliding_safe_names():
    y = np.array([[1, 0, 1], [0, 1, 1]])
    r = mlr.multilabel_report(y, y * 0.8, ["a b", "a/b", "ok-1.2_x"])
    m = mlr.scalar_metrics(r, prefix="val_")
    assert {k for k in m if k.startswith("val_f1_")} == {
        "val_f1_a_b",
        "val_f1_a_b_1",
        "val_f1_ok-1.2_x",
    }
    assert m["val_f1_a_b"] == m["val_f1_a_b_1"] == 1.0
    assert mlr.safe_metric_name("é:1 2/3") == "__1_2_3"


# ------------------------------------------------------------------ figures and HTML
def test_write_figures_writes_png_files(tmp_path, test_split, chosen):
    y, scores = test_split
    r = mlr.multilabel_report(y, scores, NAMES, thresholds=chosen)
    paths = mlr.write_figures(r, y, scores, tmp_path / "figs", "test")
    assert [p.name for p in paths] == ["pr_curves_test.png", "per_label_test.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    width, height = struct.unpack(">II", paths[0].read_bytes()[16:24])
    assert (width, height) == (600, 500)


def test_html_section_escapes_names_and_formats_values(test_split, chosen):
    y, scores = test_split
    r = mlr.multilabel_report(y, scores, NAMES, thresholds=chosen)
    page = mlr.html_section(r)
    for name in NAMES:
        assert f'<td class="name">{html.escape(name)}</td>' in page
    assert "x<y>&z" not in page and "x&lt;y&gt;&amp;z" in page
    assert f"<td>{r['micro_f1']:.4f}</td>" in page
    assert f"<td>{r['mean_average_precision']:.4f}</td>" in page
    # The label without positives: support 0 and an undefined AP shown as a dash.
    row = page.split('<td class="name">none/ever</td>')[1].split("</tr>")[0]
    assert row.startswith("<td>0</td>") and row.endswith("<td>–</td>")


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize(
    ("y", "scores", "names", "thresholds", "message"),
    [
        ([[1, 0]], [[0.5, 0.5, 0.5]], ["a", "b"], None, r"shape \(examples, labels\)"),
        ([[2, 0]], [[0.5, 0.5]], ["a", "b"], None, "only 0 and 1"),
        ([[1, 0]], [[np.nan, 0.5]], ["a", "b"], None, "finite"),
        ([[1, 0]], [[0.5, 0.5]], ["a"], None, "name each"),
        ([[1, 0]], [[0.5, 0.5]], ["a", "a"], None, "unique"),
        ([[1, 0]], [[0.5, 0.5]], ["a", "b"], [0.5, 0.5, 0.5], "one per label"),
    ],
)
def test_bad_inputs_raise_data_error(y, scores, names, thresholds, message):
    with pytest.raises(DataError, match=message):
        mlr.multilabel_report(y, scores, names, thresholds=thresholds)
