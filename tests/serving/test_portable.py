"""LiteRT and ONNX artefacts of the packaged digits model: conversion, verification, predict, serve.

One module fixture exports the session's ``digits_result`` model as a SavedModel,
float32 LiteRT, int8 LiteRT and float32 ONNX (the three conversions each in a
child process, as ``export_formats`` does for several), verified on the test split.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.serving.conftest import (
    Server,
    get,
    post,
    predict_without_tensorflow,
    probabilities,
    server_env,
    write_digit_files,
)

pytestmark = pytest.mark.slow

FORMATS = ["saved_model", "litert", "litert:int8", "onnx"]


@pytest.fixture(scope="module")
def exported(digits_result, tmp_path_factory):
    from kerasflow.serving.export import contract_for
    from kerasflow.serving.formats import export_formats
    from kerasflow.tracking import RunTracker

    cfg = digits_result.config
    out = tmp_path_factory.mktemp("portable")
    registered = digits_result.registered
    progress_log = logging.getLogger("kerasflow.progress")
    lines = _Lines()
    level = progress_log.level
    progress_log.addHandler(lines)
    progress_log.setLevel(logging.INFO)
    try:
        report = export_formats(
            digits_result.model,
            out / "serving",
            cfg,
            contract_for(cfg, digits_result.model),
            FORMATS,
            portable_dir=out / "artefacts",
            tracker=RunTracker(cfg.tracking.uri, digits_result.run_id),
            registered=(registered.name, registered.version),
        )
    finally:
        progress_log.removeHandler(lines)
        progress_log.setLevel(level)
    rows = {(r["format"], r["quantize"]): r for r in report.verification}
    return report, rows, out, lines.messages


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_verification_reports_its_progress(exported):
    # not a terminal here: one line per stage (a bar on a terminal)
    lines = exported[3]
    assert "verifying 3 artefact(s) on the test split: 3 artefacts ..." in lines, lines
    assert "measuring batch-1 latency: 4 runners ..." in lines, lines


@pytest.fixture(scope="module")
def digit_files(digits_result, tmp_path_factory):
    # 50 PNG and 50 JPEG: the SavedModel (TensorFlow, accurate IDCT) and the artefacts
    # (Pillow) decode JPEG to the same pixels, so both give the same classes.
    return write_digit_files(digits_result, tmp_path_factory.mktemp("digit_files"))[1]


def test_verification_meets_the_acceptance_figures(exported):
    report, rows, out, _ = exported
    keras = rows[("keras", "none")]
    assert keras["examples"] == 359 and keras["value"] > 0.9
    for key in [("litert", "none"), ("onnx", "none")]:
        assert rows[key]["max_prob_diff"] <= 1e-5, rows[key]
        assert rows[key]["top1_agreement"] == 1.0
        assert rows[key]["metric_drop"] == 0.0
    int8 = rows[("litert", "int8")]
    assert abs(int8["metric_drop"]) <= 0.005, int8
    assert int8["size_bytes"] * 3 <= rows[("litert", "none")]["size_bytes"]
    assert all(r["latency_ms"] > 0 for r in rows.values())
    saved = json.loads((out / "artefacts" / "verification.json").read_text())
    assert [r["file"] for r in saved] == ["", "model.tflite", "model_int8.tflite", "model.onnx"]
    assert (report.saved_model.path / "saved_model.pb").is_file()


def test_contract_beside_each_artefact(exported):
    report, rows, _, _ = exported
    for art in report.artefacts:
        contract = json.loads(art.contract_path.read_text())
        assert contract["class_names"] == [str(i) for i in range(10)]
        assert contract["image_size"] == [16, 16] and contract["channels"] == 1
        assert contract["task"] == "classification"
        assert contract["input"]["dtype"] == "uint8" and contract["input"]["name"] == "pixels"
        assert contract["outputs"] == ["class_id", "probabilities"]
        assert contract["normalisation"]["normalize"] == "unit"
        assert contract["quantize"] == art.quantize
        assert contract["verification"]["artefact"]["file"] == art.path.name


def test_litert_artefacts_carry_the_contract_in_their_metadata(exported):
    from ai_edge_litert import schema_py_generated as schema

    from kerasflow.serving.artefact_runtime import embedded_contract

    report = exported[0]
    for art in report.artefacts:
        beside = json.loads(art.contract_path.read_text())
        if art.format != "litert":
            assert embedded_contract(art.path) is None
            continue
        # the same JSON, verification figures included (written again after verifying)
        assert embedded_contract(art.path) == beside
        assert beside["verification"]["artefact"]["file"] == art.path.name
        model = schema.Model.GetRootAs(art.path.read_bytes(), 0)
        names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
        assert names.count(b"kerasflow_contract") == 1 and b"min_runtime_version" in names


def test_embedding_the_contract_leaves_the_litert_outputs_identical(digits_result):
    from ai_edge_litert.interpreter import Interpreter

    from kerasflow.serving.export import contract_for
    from kerasflow.serving.portable import convert_litert, embed_contract

    contract = contract_for(digits_result.config, digits_result.model)
    plain = convert_litert(digits_result.model, contract)  # no metadata of ours yet
    meta = {**contract, "note": "x" * 100}
    embedded = embed_contract(plain, meta)
    text = json.dumps(meta, indent=2).encode()
    # the cost in bytes: the JSON, its buffer and metadata entries, and the 16-byte alignment
    # of every buffer (measured: 400 bytes for this 257-byte JSON on a 298 KB model)
    assert len(text) < len(embedded) - len(plain) <= len(text) + 1024
    assert embed_contract(embedded, meta) == embedded  # re-embedding replaces the entry
    pixels = np.random.default_rng(3).integers(0, 256, (5, 16, 16, 1), np.uint8)
    outputs = []
    for flatbuffer in (plain, embedded):
        interpreter = Interpreter(model_content=flatbuffer)
        outputs.append(interpreter.get_signature_runner("serving_default")(pixels=pixels))
    assert outputs[0].keys() == outputs[1].keys() == {"output_0", "output_1"}
    for key in outputs[0]:
        np.testing.assert_array_equal(outputs[0][key], outputs[1][key])


def test_a_contract_json_that_disagrees_with_the_embedded_one_is_refused(exported, tmp_path):
    from kerasflow.errors import ServingError
    from kerasflow.serving.artefact_runtime import load_artefact

    source = exported[2] / "artefacts" / "model.tflite"
    model = tmp_path / "model.tflite"
    shutil.copy(source, model)
    contract = json.loads(Path(f"{source}.json").read_text())
    contract["class_names"][3] = "three"  # someone edited the JSON
    Path(f"{model}.json").write_text(json.dumps(contract))
    with pytest.raises(ServingError, match=r"differ in \['class_names'\]") as info:
        load_artefact(model)
    message = str(info.value)
    assert f"{model}.json" in message and "embedded in " + str(model) in message
    Path(f"{model}.json").write_text(json.dumps(contract, indent=None, sort_keys=True)[:-1])
    with pytest.raises(ServingError, match="not a readable JSON contract"):
        load_artefact(model)
    Path(f"{model}.json").unlink()  # the embedded contract alone: loads
    assert load_artefact(model).contract["class_names"][3] == "3"
    model.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ServingError, match="is not a LiteRT model with a readable"):
        load_artefact(model)


def test_verification_logged_to_the_run_and_the_registered_version(exported, digits_result):
    from mlflow import MlflowClient

    client = MlflowClient(digits_result.config.tracking.uri)
    run = client.get_run(digits_result.run_id)
    assert run.data.tags["kerasflow.export.litert.int8.accuracy"] == (
        f"{exported[1][('litert', 'int8')]['value']:.4f}"
    )
    table = client.download_artifacts(digits_result.run_id, "export/verification.json")
    logged = json.loads(Path(table).read_text())
    assert logged["columns"][:3] == ["format", "quantize", "file"] and len(logged["data"]) == 4
    reg = digits_result.registered
    version = client.get_model_version(reg.name, reg.version)
    assert version.tags["kerasflow.export.onnx.none.top1_agreement"] == "1.0000"


def test_flex_op_fails_conversion_naming_the_op(tmp_path):
    import keras

    from kerasflow.config import DataConfig
    from kerasflow.errors import ServingError
    from kerasflow.serving.portable import export_portable

    @keras.saving.register_keras_serializable(package="kerasflow_test")
    class CumulativeProduct(keras.layers.Layer):
        def call(self, x):
            return keras.ops.cumprod(x, axis=-1)

    inputs = keras.Input((4, 4, 1))
    x = CumulativeProduct()(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    data = DataConfig(source="digits", image_size=[4, 4], channels=1)
    contract = {"task": "classification", "class_names": ["a", "b"]}
    with pytest.raises(ServingError, match="Cumprod") as info:
        export_portable(model, tmp_path, data, contract, "litert")
    assert "Flex" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_missing_runtime_names_the_extra(monkeypatch):
    from kerasflow.errors import ServingError
    from kerasflow.serving.artefact_runtime import require

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ServingError, match=r"kerasflow\[onnx\]"):
        require("onnxruntime", "onnx")


def test_predict_on_each_artefact_matches_the_saved_model_without_tensorflow(
    exported, digit_files, tmp_path
):
    from kerasflow.errors import ServingError
    from kerasflow.serving.predict import predict_paths

    report, _, out, _ = exported
    paths = [str(p) for p in digit_files]
    # a lone .tflite (copied without its JSON) predicts from the contract embedded in it
    lone = tmp_path / "phone" / "model_int8.tflite"
    lone.parent.mkdir()
    shutil.copy(out / "artefacts" / "model_int8.tflite", lone)
    # a local export the store does not record: its digest is named, as for serve
    with pytest.raises(ServingError, match="no trusted record holds its content digest"):
        predict_paths(str(report.saved_model.path), paths[:1])
    reference = predict_paths(
        str(report.saved_model.path), paths, saved_model_digest=report.saved_model.digest
    )
    ref_classes = [r["class_id"] for r in reference]
    artefacts = [out / "artefacts" / n for n in ("model.tflite", "model_int8.tflite", "model.onnx")]
    for model in [*artefacts, lone]:
        name = model.name
        results = predict_without_tensorflow(model, paths)
        assert [r["path"] for r in results] == paths
        classes = [r["class_id"] for r in results]
        assert [r["class_name"] for r in results] == [str(c) for c in classes]
        if "int8" in name:  # quantised: the verification allows a borderline image to flip
            assert np.mean(np.equal(classes, ref_classes)) >= 0.98
        else:
            assert classes == ref_classes
            np.testing.assert_allclose(probabilities(results), probabilities(reference), atol=1e-4)


@pytest.fixture(scope="module")
def litert_server(exported, digits_result, tmp_path_factory):
    log = tmp_path_factory.mktemp("litert_server") / "server.log"
    model = exported[2] / "artefacts" / "model_int8.tflite"
    srv = Server([str(model)], server_env(digits_result.config.tracking.uri), log)
    try:
        srv.wait()
        yield srv
    finally:
        srv.stop()


def test_serving_a_litert_artefact_answers_like_the_saved_model(
    litert_server, exported, digit_files
):
    from kerasflow.serving.predictor import Predictor

    files = [p.read_bytes() for p in digit_files[:20]]
    saved = Predictor.from_export(exported[0].saved_model.path)
    reference = saved.predict({"b64": [base64.b64encode(f).decode() for f in files]})
    body = json.dumps({"instances": [{"b64": base64.b64encode(f).decode()} for f in files]})
    status, answer = post(litert_server.url + "/invocations", body.encode())
    assert status == 200
    predictions = json.loads(answer)["predictions"]
    agree = np.mean(
        [a["class_id"] == b["class_id"] for a, b in zip(predictions, reference, strict=True)]
    )
    assert agree >= 0.95
    assert np.abs(probabilities(predictions) - probabilities(reference)).max() < 0.1
    status, health = get(litert_server.url + "/ping")
    assert status == 200 and json.loads(health)["task"] == "classification"
    pixels = np.random.default_rng(0).integers(0, 256, (2, 30, 20), np.uint8).tolist()
    status, answer = post(
        litert_server.url + "/invocations", json.dumps({"inputs": {"images": pixels}}).encode()
    )
    assert status == 200 and len(json.loads(answer)["predictions"]) == 2


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"instances": [{"b64": "not base64!"}]}, 400, "not valid base64"),
        ({"instances": [{"b64": base64.b64encode(b"GIF89a" + b"\0" * 7).decode()}]}, 400, "b64[0]"),
        ({"inputs": {"images": [[[300]]]}}, 400, "0..255"),
        ({"inputs": {"tensor": [[[[1.0]]]]}}, 400, "N x 16 x 16 x 1"),
        ({"wrong": 1}, 400, "top-level key"),
    ],
)
def test_litert_server_keeps_the_4xx_rules(litert_server, payload, status, message):
    got, body = post(litert_server.url + "/invocations", json.dumps(payload).encode())
    assert got == status
    assert message in json.loads(body)["message"]


def test_cli_refuses_a_quantisation_the_format_lacks(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "kerasflow", "export", "models:/none/1", "--format", "onnx"]
        + ["--quantize", "float16", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "float16 quantisation is offered for LiteRT only" in done.stderr


def test_config_export_formats_are_checked():
    import kerasflow
    from kerasflow.errors import ConfigError

    cfg = kerasflow.load_config(None, ["export.formats=[saved_model, litert:int8, onnx:dynamic]"])
    assert cfg.export.formats == ["saved_model", "litert:int8", "onnx:dynamic"]
    with pytest.raises(ConfigError, match="onnx:float16"):
        kerasflow.load_config(None, ["export.formats=[onnx:float16]"])


def test_max_metric_drop_fails_with_exit_code_1(exported):
    from kerasflow.errors import VerificationError
    from kerasflow.serving.verify import check_drop

    rows = list(exported[1].values())
    check_drop(rows, 0.5)
    worse = [rows[0], {**rows[1], "value": rows[0]["value"] - 0.02, "metric_drop": 0.02}]
    with pytest.raises(VerificationError, match="drop 0.0200") as info:
        check_drop(worse, 0.01)
    assert info.value.exit_code == 1
