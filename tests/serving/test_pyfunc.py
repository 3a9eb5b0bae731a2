"""The served model (Predictor), the request parsing of the HTTP app, and MLflow's pyfunc wrapper."""

from __future__ import annotations

import base64

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_runs_uri_is_exported_on_the_fly_and_served(served_run, tmp_path, export_dir, image_files):
    import tensorflow as tf

    from kerasflow.serving import mlflow_model as tracked
    from kerasflow.serving.predictor import Predictor
    from kerasflow.serving.server import limits_for, resolve_saved_model

    uri = served_run.config.tracking.uri
    source = resolve_saved_model(f"runs:/{served_run.run_id}/model", tmp_path, uri=uri)
    assert (tmp_path / "export" / "1" / "saved_model.pb").is_file()
    model = Predictor.from_export(source.saved_model_dir, limits_for(source, 1.0))
    _, paths = image_files
    raw = [p.read_bytes() for p in paths[:6]]
    got = model.predict({"b64": np.array([base64.b64encode(b).decode() for b in raw])})
    want = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        image_bytes=tf.constant(raw)
    )
    probs = np.array([g["probabilities"] for g in got])
    assert np.max(np.abs(probs - want["probabilities"].numpy())) <= 1e-5
    # A SavedModel folder (or its TF Serving base folder) is served as it is.
    # (the tracking store records its digest: the run's export_digest tag)
    assert resolve_saved_model(str(export_dir.parent), tmp_path / "w", uri=uri).saved_model_dir == (
        export_dir
    )
    wrapped = tracked.save_serving_model(export_dir, tmp_path / "serving_model", 1.0)
    saved = tracked.load_serving_model(wrapped, 1.0, uri=uri)
    assert saved.predict({"images": np.zeros((1, 5, 7), np.int64)})[0]["class_name"] in [
        str(i) for i in range(10)
    ]


def test_json_depth_and_request_forms():
    from kerasflow.serving.http_app import columns_of, json_depth, parse_json
    from kerasflow.serving.predictor import RequestError

    assert json_depth(b'{"a": "[[[[{{{{", "b": [[1], [2]]}') == 3
    assert json_depth(b'["\\"[[["]') == 1  # an escaped quote does not end the string
    assert json_depth(b"[" * 5000 + b"]" * 5000) == 5000
    with pytest.raises(RequestError, match="nested 9 levels deep"):
        parse_json(b"[" * 9 + b"]" * 9)
    with pytest.raises(RequestError, match="NaN"):
        parse_json(b'{"inputs": {"tensor": [NaN]}}')
    assert columns_of({"instances": [{"b64": "a"}, {"b64": "b"}]}) == {"b64": ["a", "b"]}
    assert columns_of({"inputs": [[[1, 2]]]}) == {"images": [[[1, 2]]]}
    assert columns_of({"inputs": [[[1.5]]]}) == {"tensor": [[[1.5]]]}
    assert columns_of({"instances": [{"image_bytes": {"b64": "a"}}]}) == {
        "image_bytes": [{"b64": "a"}]
    }
    for bad, message in [
        ({"instances": [{"b64": "a"}, {"images": 1}]}, "same one field"),
        ({"instances": [{"b64": "a"}, [1]]}, "mixes objects and arrays"),
        ({"inputs": "x"}, "'inputs' must be an object"),
        ({"instances": {"b64": "a"}}, "'instances' must be an array"),
    ]:
        with pytest.raises(RequestError, match=message):
            columns_of(bad)
