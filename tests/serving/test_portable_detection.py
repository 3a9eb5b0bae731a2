"""A trained CenterNet in LiteRT and ONNX: mAP against Keras, boxes, ``kerasflow predict``, serve.

One module fixture trains a tiny CenterNet on synthetic shapes (160 images of
64 x 64, 8 epochs, about 25 s on 2 cores), then exports it as a SavedModel,
float32 and int8 LiteRT and float32 ONNX, verified on the test split
(conversions in this process: a test need not isolate them).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import Server, get, post, predict_without_tensorflow, server_env
from tests.tasks.detection.helpers import tiny_run

pytestmark = pytest.mark.slow

FORMATS = ["saved_model", "litert", "litert:int8", "onnx"]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from kerasflow import tasks
    from kerasflow.config import build_config
    from kerasflow.training.compile import build_compiled_model
    from kerasflow.training.fit import fit_model, set_seeds

    root = tmp_path_factory.mktemp("detector")
    cfg = build_config(
        tiny_run(
            root,
            "det-portable",
            data={
                "split": {"train": 0.75, "validation": 0.0, "test": 0.25},
                "normalize": "unit",
                "detection": {"synthetic_images": 160, "max_boxes": 8},
            },
            train={"epochs": 8},
            compile={"optimizer": {"name": "adam", "learning_rate": 0.003}, "loss": "centernet"},
        )
    )
    set_seeds(cfg)
    task = tasks.get("detection")
    prepared = task.prepare(cfg.data, cfg.experiment.seed)
    model = build_compiled_model(cfg, prepared)
    data = task.training_data(prepared, model)
    fit_model(model, cfg, data, [])
    return cfg, model, data, task.contract(model, prepared), root


@pytest.fixture(scope="module")
def exported(detector):
    from kerasflow.serving.formats import export_formats

    cfg, model, data, contract, root = detector
    report = export_formats(
        model,
        root / "serving",
        cfg,
        contract,
        FORMATS,
        data=data,
        portable_dir=root / "artefacts",
        isolate=False,
    )
    rows = {(r["format"], r["quantize"]): r for r in report.verification}
    return report, rows, root / "artefacts"


def test_litert_and_onnx_map_within_001_of_keras(exported):
    report, rows, folder = exported
    keras_row = rows[("keras", "none")]
    assert keras_row["metric"] == "map50"
    assert keras_row["value"] > 0.5, keras_row  # the comparison means something
    for key in (("litert", "none"), ("onnx", "none")):
        row = rows[key]
        assert abs(row["metric_drop"]) <= 0.01, row
        assert row["top1_agreement"] >= 0.97, row
        assert row["max_prob_diff"] < 1e-4, row  # the heatmaps
        assert row["examples"] == keras_row["examples"] >= 30
    int8 = rows[("litert", "int8")]
    assert (
        int8["metric_drop"] <= 0.05 and int8["size_bytes"] < rows[("litert", "none")]["size_bytes"]
    )
    contract = json.loads((folder / "model.tflite.json").read_text())
    assert contract["outputs"] == ["boxes", "classes", "probabilities", "scores"]
    assert contract["decode"] == {
        "max_detections": 100,
        "score_threshold": 0.05,
        "iou_threshold": 0.5,
    }
    assert contract["box_format"].startswith("[ymin, xmin, ymax, xmax]")
    assert contract["verification"]["artefact"]["metric"] == "map50"
    saved = json.loads((folder / "verification.json").read_text())
    assert [r["file"] for r in saved] == ["", "model.tflite", "model_int8.tflite", "model.onnx"]
    # --max-metric-drop judges mAP@0.5: 0.01 passes the float32 artefacts, a negative limit fails.
    from kerasflow.errors import VerificationError
    from kerasflow.serving.verify import check_drop

    check_drop([keras_row, rows[("litert", "none")], rows[("onnx", "none")]], 0.01)
    with pytest.raises(VerificationError, match=r"model.onnx: map50 0\.\d+ vs Keras"):
        check_drop([keras_row, rows[("onnx", "none")]], -0.5)


def test_artefact_detections_match_the_keras_decode(exported, detector):
    from kerasflow.models.detector import inference_model
    from kerasflow.serving.artefact_runtime import load_artefact
    from kerasflow.serving.verify import split_pixels
    from kerasflow.tasks import get
    from kerasflow.tasks.predictions import padded_detections

    cfg, model, data, contract, _ = detector
    pixels, _ = split_pixels(data, "test", limit=16, task=get("detection"))
    keras_out = inference_model(model, **contract["decode"])(pixels.astype(np.float32))
    want = {k: np.asarray(v) for k, v in keras_out.items()}
    assert want["num_detections"].min() >= 1
    for name in ("model.tflite", "model.onnx"):
        outputs = load_artefact(exported[2] / name).run(pixels)
        assert outputs["boxes"].shape == (16, 100, 4) and outputs["classes"].dtype == np.int32
        got = padded_detections(outputs, contract)
        for i in range(len(pixels)):
            # Detections above 0.1: far from the score threshold, where a 1e-7 difference
            # could add or drop a peak; each in the same order, class and place.
            n = int(np.sum(want["scores"][i, : want["num_detections"][i]] > 0.1))
            assert n >= 1
            np.testing.assert_array_equal(got["classes"][i, :n], want["classes"][i, :n])
            np.testing.assert_allclose(got["scores"][i, :n], want["scores"][i, :n], atol=1e-5)
            np.testing.assert_allclose(got["boxes"][i, :n], want["boxes"][i, :n], atol=1e-5)


@pytest.mark.parametrize(
    ("seed", "limit", "iou", "threshold"),
    [(3, 20, 0.3, 0.2), (4, 100, 0.5, 0.05), (5, 5, 0.6, 0.1)],
)
def test_nms_in_numpy_matches_combined_non_max_suppression(seed, limit, iou, threshold):
    import tensorflow as tf

    from kerasflow.tasks.predictions import select_detections

    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 0.7, (100, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(0.05, 0.3, (100, 2))], -1)
    boxes = boxes.astype(np.float32)
    scores = rng.uniform(0, 1, 100).astype(np.float32)
    classes = rng.integers(0, 3, 100)
    decode = {"max_detections": limit, "score_threshold": threshold, "iou_threshold": iou}
    nms = tf.image.combined_non_max_suppression(
        boxes[None, :, None, :],
        (np.eye(3, dtype=np.float32)[classes] * scores[:, None])[None],
        limit,
        limit,
        iou_threshold=iou,
        score_threshold=threshold,
        clip_boxes=False,
    )
    n = int(nms.valid_detections[0])
    got_boxes, got_scores, got_classes = select_detections(boxes, scores, classes, decode)
    assert min(5, limit) <= n == len(got_scores)
    np.testing.assert_allclose(got_scores, nms.nmsed_scores[0, :n])
    np.testing.assert_array_equal(got_classes, np.asarray(nms.nmsed_classes[0, :n]).astype(int))
    np.testing.assert_allclose(got_boxes, nms.nmsed_boxes[0, :n])


@pytest.fixture(scope="module")
def image_files(detector):
    """Real PNG files: two of the data's own 64 x 64 images, and two of other sizes
    (one taller, one wider) that the letterbox pads."""
    from PIL import Image

    root = detector[4]
    files = sorted((root / "data").rglob("*.png"))[:2]
    out = root / "requests"
    out.mkdir()
    image = np.asarray(Image.open(files[0]).convert("RGB"))
    tall = np.zeros((96, 64, 3), np.uint8)
    tall[16:80] = image
    wide = np.asarray(Image.fromarray(image).resize((128, 80), Image.Resampling.BILINEAR))
    extra = []
    for name, pixels in (("tall.png", tall), ("wide.png", wide)):
        Image.fromarray(pixels).save(out / name)
        extra.append(out / name)
    return [*files, *extra]


def _same_boxes(got: dict, want: dict, min_score: float = 0.2, atol: float = 1.0) -> None:
    """The detections above ``min_score``: the same classes and boxes within ``atol`` pixels."""
    keep_got = [j for j, s in enumerate(got["scores"]) if s >= min_score]
    keep_want = [j for j, s in enumerate(want["scores"]) if s >= min_score]
    assert len(keep_got) == len(keep_want) >= 1, (got, want)
    for a, b in zip(keep_got, keep_want, strict=True):
        assert got["class_names"][a] == want["class_names"][b]
        np.testing.assert_allclose(got["boxes"][a], want["boxes"][b], atol=atol)
        assert abs(got["scores"][a] - want["scores"][b]) < 0.02


def test_predict_json_gives_the_saved_model_boxes_without_tensorflow(exported, image_files):
    from kerasflow.serving.predict import predict_paths

    report, _, folder = exported
    paths = [str(p) for p in image_files]
    reference = predict_paths(
        str(report.saved_model.path), paths, saved_model_digest=report.saved_model.digest
    )
    for name in ("model.tflite", "model.onnx"):
        results = predict_without_tensorflow(folder / name, paths)
        assert [r["path"] for r in results] == paths
        for got, want in zip(results, reference, strict=True):
            assert set(got) == {"path", "boxes", "scores", "class_ids", "class_names"}
            _same_boxes(got, want)
        # Boxes are in each file's own pixels: the tall and the wide image.
        assert max(b[2] for b in results[2]["boxes"]) > 64
        assert max(b[3] for b in results[3]["boxes"]) > 64


@pytest.fixture(scope="module")
def onnx_server(exported, tracking_uri, tmp_path_factory):
    log = tmp_path_factory.mktemp("detection_server") / "server.log"
    srv = Server([str(exported[2] / "model.onnx")], server_env(tracking_uri), log)
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()


def test_serving_a_detection_artefact_answers_like_the_saved_model(
    onnx_server, exported, image_files
):
    from kerasflow.serving.predictor import Predictor

    files = [Path(p).read_bytes() for p in image_files]
    saved = Predictor.from_export(exported[0].saved_model.path)
    reference = saved.predict({"b64": [base64.b64encode(f).decode() for f in files]})
    body = json.dumps({"instances": [{"b64": base64.b64encode(f).decode()} for f in files]})
    status, answer = post(onnx_server.url + "/invocations", body.encode())
    assert status == 200
    for got, want in zip(json.loads(answer)["predictions"], reference, strict=True):
        _same_boxes(got, want)
    status, health = get(onnx_server.url + "/ping")
    assert status == 200 and json.loads(health)["task"] == "detection"
    # The model's own input as a tensor: boxes in its 64 x 64 pixels.
    from PIL import Image

    pixels = np.asarray(Image.open(image_files[0]).convert("RGB"), np.float32)[None]
    status, answer = post(
        onnx_server.url + "/invocations",
        json.dumps({"inputs": {"tensor": pixels.tolist()}}).encode(),
    )
    assert status == 200
    (tensor_answer,) = json.loads(answer)["predictions"]
    _same_boxes(tensor_answer, reference[0])
    status, answer = post(onnx_server.url + "/invocations", b'{"inputs": {"images": [[[300]]]}}')
    assert status == 400 and "0..255" in json.loads(answer)["message"]
