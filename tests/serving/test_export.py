"""SavedModel export: layout, signatures, automatic export after training, safe loading."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.serving.conftest import REGISTERED

pytestmark = pytest.mark.slow


def test_auto_export_is_logged_and_attached_to_the_version(served_run, export_dir, tracking_uri):
    from mlflow.tracking import MlflowClient

    assert (export_dir / "saved_model.pb").is_file()
    names = (export_dir / "assets" / "class_names.txt").read_text().split()
    assert names == [str(i) for i in range(10)]
    client = MlflowClient(tracking_uri)
    reg = served_run.registered
    tags = client.get_model_version(reg.name, reg.version).tags
    run_id = served_run.run_id
    assert tags["kerasflow.export_uri"] == f"runs:/{run_id}/export/1"
    assert tags["kerasflow.serving_model_uri"].startswith("models:/")
    logged = {f.path for f in client.list_artifacts(run_id, "export/1")}
    assert "export/1/saved_model.pb" in logged
    assert client.get_run(run_id).data.tags["kerasflow.export_dir"] == str(export_dir.resolve())


def test_saved_model_cli_lists_three_signatures(export_dir):
    cli = Path(sys.executable).parent / "saved_model_cli"
    out = subprocess.run(
        [str(cli), "show", "--dir", str(export_dir), "--all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    for name in ("serving_default", "predict_images", "predict_tensor"):
        assert f"signature_def['{name}']" in out
    default = out.split("signature_def['serving_default']")[1]
    assert "inputs['image_bytes']" in default and "DT_STRING" in default
    assert "outputs['class_name']" in default and "outputs['probabilities']" in default
    assert "shape: (-1, 10)" in default
    images = out.split("signature_def['predict_images']")[1].split("signature_def[")[0]
    assert "DT_UINT8" in images and "shape: (-1, -1, -1, -1)" in images
    tensor = out.split("signature_def['predict_tensor']")[1].split("signature_def[")[0]
    assert "DT_FLOAT" in tensor and "shape: (-1, 16, 16, 1)" in tensor


def test_uint8_signature_takes_any_size_and_channels(export_dir):
    import tensorflow as tf
    from PIL import Image

    loaded = tf.saved_model.load(str(export_dir))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(23, 17, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    from_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant([buf.getvalue()]))
    from_pixels = loaded.signatures["predict_images"](images=tf.constant(rgb[None]))
    np.testing.assert_allclose(
        from_bytes["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-6
    )
    rgba = np.concatenate([rgb, np.full((23, 17, 1), 255, np.uint8)], axis=-1)
    from_rgba = loaded.signatures["predict_images"](images=tf.constant(rgba[None]))
    np.testing.assert_allclose(
        from_rgba["probabilities"].numpy(), from_pixels["probabilities"].numpy(), atol=1e-6
    )
    assert from_bytes["class_name"].numpy()[0].decode() == str(from_bytes["class_id"].numpy()[0])


def test_export_api_versions_and_cli(served_run, tmp_path, tracking_uri, monkeypatch):
    import kerasflow
    from kerasflow.cli import cli
    from kerasflow.errors import ServingError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    first = kerasflow.export(f"models:/{REGISTERED}@champion", tmp_path / "tfs")
    assert first.version == 1 and (first.path / "saved_model.pb").is_file()
    result = CliRunner().invoke(
        cli, ["export", f"models:/{REGISTERED}/1", "--out", str(tmp_path / "tfs")]
    )
    assert result.exit_code == 0, result.output
    assert f"Exported version 2 to {tmp_path / 'tfs' / '2'}" in result.output
    with pytest.raises(ServingError, match="already exists"):
        kerasflow.export(f"models:/{REGISTERED}/1", tmp_path / "tfs", version=2)


def _canary_model(kind: str, canary: Path):
    import keras

    def touch(x):
        canary.write_text("ran")
        return x

    inputs = keras.Input((16, 16, 1))
    if kind == "lambda":
        x = keras.layers.Lambda(touch)(inputs)
        x = keras.layers.Flatten()(x)
    else:
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(10, activation=lambda t: touch(t))(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("kind", ["lambda", "function_activation"])
def test_unsafe_keras_file_is_refused_and_canary_never_runs(kind, tmp_path, served_run):
    import kerasflow
    from kerasflow.cli import cli
    from kerasflow.errors import ModelError

    canary = tmp_path / "canary.txt"
    model = _canary_model(kind, canary)
    path = tmp_path / "evil.keras"
    model.save(path)
    canary.unlink(missing_ok=True)  # building the model may run it; from here on it must not
    with pytest.raises(ModelError, match="safely") as err:
        kerasflow.export(str(path), tmp_path / "out", config=served_run.config)
    assert "evil.keras" in str(err.value)
    config = tmp_path / "run.yaml"
    config.write_text(served_run.config.to_yaml())
    for args in (
        ["export", str(path), "--out", str(tmp_path / "out"), "--config", str(config)],
        ["serve", str(path), "--config", str(config), "--port", "1"],
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "Cannot load" in result.output and "safely" in result.output
    assert not canary.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_segmentation_export_returns_a_class_map(tmp_path):
    import keras
    import tensorflow as tf
    from PIL import Image

    from kerasflow.config import DataConfig
    from kerasflow.serving.export import export_saved_model, read_metadata

    inputs = keras.Input((12, 12, 3))
    # the model scales its own pixels (as models.build(..., input_scaling=...) makes it)
    x = keras.layers.Rescaling(2 / 255, -1)(inputs)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(x)
    model = keras.Model(inputs, x)
    data = DataConfig(image_size=(12, 12), channels=3, normalize="symmetric")
    contract = {"task": "segmentation", "class_names": ["bg", "a", "b"]}
    exported = export_saved_model(model, tmp_path, data, contract)
    assert read_metadata(exported.path)["task"] == "segmentation"
    loaded = tf.saved_model.load(str(exported.path))
    buf = io.BytesIO()
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(buf, "BMP")
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([buf.getvalue()]))
    assert out["class_map"].shape == (1, 12, 12)
    assert out["probabilities"].shape == (1, 12, 12, 3)
    expected = model(np.zeros((1, 12, 12, 3), np.uint8)).numpy()  # black pixels in
    assert np.ptp(expected) > 0.01  # not a uniform map: the comparison means something
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-6)
    meta = json.loads((exported.path / "assets" / "kerasflow.json").read_text())
    assert meta["class_names"] == ["bg", "a", "b"]
    # Through the pyfunc serving model: one class map per image.
    from kerasflow.serving import mlflow_model as tracked

    served = tracked.load_serving_model(
        tracked.save_serving_model(exported.path, tmp_path / "served", 1.0),
        digest=exported.digest,  # an untracked export: its digest is passed
    )
    got = served.predict({"images": np.zeros((2, 30, 20, 3), np.int64)})
    assert len(got) == 2
    assert np.array_equal(got[0]["class_map"], out["class_map"].numpy()[0])
