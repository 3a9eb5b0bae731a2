"""What ``kerasflow serve`` refuses: foreign model folders and graphs with file ops, before they run."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tests.serving.conftest import server_env

pytestmark = pytest.mark.slow


def _canary_code(canary) -> str:
    return f"import pathlib\npathlib.Path({str(canary)!r}).write_text('ran')\n"


@pytest.fixture
def good_folder(export_dir, tmp_path):
    """A serving model folder exactly as kerasflow writes it."""
    from kerasflow.serving import mlflow_model as tracked

    return tracked.save_serving_model(export_dir, tmp_path / "good", 0.5)


def _edit(folder, change):
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    change(spec["flavors"]["python_function"], spec)
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))


def _evil_folders(good, tmp_path, canary):
    """Copies of a kerasflow serving model that would run ``canary``'s code if imported."""
    folders = {}
    loader = shutil.copytree(good, tmp_path / "loader")
    (loader / "code").mkdir()
    (loader / "code" / "kfevil.py").write_text(_canary_code(canary))
    _edit(loader, lambda f, s: f.update(loader_module="kfevil", code="code"))
    folders["loader_module"] = loader
    shadow = shutil.copytree(good, tmp_path / "shadow")
    (shadow / "code").mkdir()
    (shadow / "code" / "h11.py").write_text(_canary_code(canary))  # uvicorn imports h11
    _edit(shadow, lambda f, s: f.update(code="code"))
    folders["shadowing"] = shadow
    beside = shutil.copytree(good, tmp_path / "beside")
    (beside / "h11.py").write_text(_canary_code(canary))
    folders["file_beside"] = beside
    pickled = shutil.copytree(good, tmp_path / "pickled")
    _edit(pickled, lambda f, s: f.update(python_model="python_model.pkl"))
    folders["pickle"] = pickled
    two = shutil.copytree(good, tmp_path / "two_flavors")
    _edit(two, lambda f, s: s["flavors"].update(sklearn={"pickled_model": "m.pkl"}))
    folders["extra_flavor"] = two
    return folders


def test_kerasflow_folder_is_accepted_and_altered_ones_refused(good_folder, tmp_path):
    from kerasflow.errors import ServingError
    from kerasflow.serving.trust import check_serving_folder

    saved, config = check_serving_folder(good_folder)
    assert (saved / "saved_model.pb").is_file() and config == {"max_payload_mb": 0.5}
    canary = tmp_path / "canary.txt"
    expected = {
        "loader_module": "loader_module is 'kfevil'",
        "shadowing": "it names code paths ('code')",
        "file_beside": "it holds 'h11.py'",
        "pickle": "keys kerasflow never writes: ['python_model']",
        "extra_flavor": "not exactly ['python_function']",
    }
    for name, folder in _evil_folders(good_folder, tmp_path, canary).items():
        with pytest.raises(ServingError, match="not a kerasflow serving model") as caught:
            check_serving_folder(folder)
        assert expected[name] in str(caught.value), name
    assert not canary.exists()


def _serve_exit(model: str, tracking_uri: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kerasflow", "serve", model, "--port", "1"],
        env=server_env(tracking_uri),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_serve_refuses_code_folders_locally_and_from_runs_uri(good_folder, tmp_path, tracking_uri):
    """Exit 2 from `kerasflow serve`, and the canary the folders' code would write never appears."""
    import mlflow

    canary = tmp_path / "canary.txt"
    folders = _evil_folders(good_folder, tmp_path, canary)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("trust-canary"))
    client.log_artifacts(run.info.run_id, str(folders["loader_module"]), "serving_model")
    client.set_terminated(run.info.run_id)
    for model in (str(folders["loader_module"]), f"runs:/{run.info.run_id}/serving_model"):
        done = _serve_exit(model, tracking_uri, tmp_path)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "not a kerasflow serving model" in done.stderr
        assert "loader_module is 'kfevil'" in done.stderr
    done = _serve_exit(str(folders["shadowing"]), tracking_uri, tmp_path)
    assert done.returncode == 2 and "code paths" in done.stderr
    assert not canary.exists()


def test_graph_with_write_file_is_refused_before_loading(export_dir, tmp_path):
    import tensorflow as tf

    from kerasflow.errors import ServingError
    from kerasflow.serving.server import resolve_saved_model
    from kerasflow.serving.trust import check_saved_model_graph

    check_saved_model_graph(export_dir)  # kerasflow's own export passes
    canary = tmp_path / "canary.txt"

    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            tf.io.write_file(str(canary), image_bytes[0])
            return {"probabilities": tf.zeros([tf.shape(image_bytes)[0], 10])}

    module = Foreign()
    foreign = tmp_path / "foreign"
    tf.saved_model.save(module, str(foreign), signatures={"serving_default": module.serve})
    shutil.copytree(export_dir / "assets", foreign / "assets", dirs_exist_ok=True)
    with pytest.raises(ServingError, match=r"WriteFile \(in __inference_serve"):
        resolve_saved_model(str(foreign), tmp_path / "work")
    assert not canary.exists()
