"""Content digests of exports, and refusal of foreign model folders through ``runs:/`` and ``models:/``.

The trusted record of an export's digest is the tracking store (run and
model-version tags), never a file beside the model: an altered export is
refused even when its own ``kerasflow.json`` claims the new digest.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from tests.serving.conftest import REGISTERED, server_env
from tests.serving.test_trust import _evil_folders

pytestmark = pytest.mark.slow

TAG = "kerasflow.export_digest"


def _flip_variables(folder) -> None:
    """Change one byte of the weights: the graph still loads, the numbers differ."""
    data = sorted((folder / "variables").glob("variables.data-*"))[0]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))


def test_digest_is_recorded_everywhere_and_covers_every_file(
    served_run, export_dir, tracking_uri, tmp_path
):
    from kerasflow.errors import ServingError
    from kerasflow.serving.digest import claimed_digest, content_digest, write_digest
    from kerasflow.serving.mlflow_model import verify_export

    digest = content_digest(export_dir)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    client = MlflowClient(tracking_uri)
    reg = served_run.registered
    assert client.get_run(served_run.run_id).data.tags[TAG] == digest
    assert client.get_model_version(reg.name, reg.version).tags[TAG] == digest
    assert claimed_digest(export_dir) == digest
    contract = json.loads((export_dir / "assets" / "kerasflow.json").read_text())
    assert contract["content_digest"] == digest
    # Recorded for the model version, its run, and (looked up in the store) the local folder.
    assert verify_export(export_dir, f"models:/{REGISTERED}/{reg.version}", tracking_uri) is None
    assert (
        verify_export(export_dir, f"runs:/{served_run.run_id}/serving_model", tracking_uri) is None
    )
    assert verify_export(export_dir, str(export_dir), tracking_uri) is None
    logged_model = client.get_run(served_run.run_id).data.tags["kerasflow.serving_model_uri"]
    assert logged_model.startswith("models:/m-")  # a logged model: its run's tag counts
    assert verify_export(export_dir, logged_model, tracking_uri) is None
    # The export folder logged to the run is served from runs:/ as well, checked the same way.
    from kerasflow.serving.server import resolve_saved_model

    logged = resolve_saved_model(
        f"runs:/{served_run.run_id}/export/1", tmp_path / "work", uri=tracking_uri
    )
    assert content_digest(logged.saved_model_dir) == digest and logged.warning is None

    copy = shutil.copytree(export_dir, tmp_path / "copy")
    assert content_digest(copy) == digest  # the path does not count, only what is inside
    changes = {
        "weights": _flip_variables,
        "graph": lambda f: (f / "saved_model.pb").write_bytes(
            (f / "saved_model.pb").read_bytes() + b"\0"
        ),
        "contract": lambda f: (f / "assets" / "kerasflow.json").write_text(
            json.dumps({**contract, "class_names": list("abcdefghij")})
        ),
        "extra_file": lambda f: (f / "assets" / "more.txt").write_text("x"),
        "removed_file": lambda f: (f / "assets" / "class_names.txt").unlink(),
    }
    for name, change in changes.items():
        altered = shutil.copytree(export_dir, tmp_path / name)
        change(altered)
        assert content_digest(altered) != digest, name
        with pytest.raises(ServingError) as caught:
            verify_export(altered, str(altered), tracking_uri)
        message = str(caught.value)
        assert "no trusted record holds its content digest" in message, name
        assert "--trust-saved-model" in message and "--saved-model-digest" in message
        assert "A SavedModel graph is code" in message
        if name != "contract":  # an edited contract no longer claims any digest
            assert f"its files changed after export (its kerasflow.json claims {digest})" in message
    # An attacker who also rewrites the claimed digest is still refused: the store decides.
    forged = tmp_path / "weights"
    write_digest(forged)
    assert claimed_digest(forged) == content_digest(forged) != digest
    with pytest.raises(ServingError, match="no run of the tracking store records it"):
        verify_export(forged, str(forged), tracking_uri)
    with pytest.raises(ServingError, match=r"differs from the recorded one \(tag kerasflow"):
        verify_export(forged, f"models:/{REGISTERED}/{reg.version}", tracking_uri)
    # The user may vouch for a folder by its digest, or trust it with a warning.
    assert verify_export(forged, str(forged), tracking_uri, digest=claimed_digest(forged)) is None
    warning = verify_export(forged, str(forged), tracking_uri, trust=True)
    assert "loaded because of --trust-saved-model" in warning and "graph is code" in warning
    with pytest.raises(ServingError, match="64 hex digits"):
        verify_export(forged, str(forged), tracking_uri, digest="sha256:abc")


def test_keras_flavor_holding_a_saved_model_is_refused_by_evaluate_and_export(
    served_run, tracking_uri, tmp_path
):
    """MLflow's Keras flavor can hold a SavedModel (tf.saved_model.load): never loaded."""
    import yaml

    from kerasflow.errors import ModelError
    from kerasflow.tracking.model_registry import load_model

    client = MlflowClient(tracking_uri)
    local = client.download_artifacts(served_run.run_id, "model", str(tmp_path))
    spec = yaml.safe_load((tmp_path / "model" / "MLmodel").read_text())
    spec["flavors"]["keras"]["save_exported_model"] = True
    (tmp_path / "model" / "MLmodel").write_text(yaml.safe_dump(spec))
    run = client.create_run(client.create_experiment("keras-flavor-graph"))
    client.log_artifacts(run.info.run_id, local, "model")
    with pytest.raises(ModelError, match="its Keras flavor is not a .keras file"):
        load_model(f"runs:/{run.info.run_id}/model", tracking_uri)


def _store_model(client, name: str, folder, tags: dict | None = None) -> str:
    """Log ``folder`` as a run's ``serving_model`` artifact and register it; returns the run id."""
    run = client.create_run(client.get_experiment_by_name("trust-acceptance").experiment_id)
    run_id = run.info.run_id
    client.log_artifacts(run_id, str(folder), "serving_model")
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id)
    client.create_registered_model(name)
    source = f"{client.get_run(run_id).info.artifact_uri}/serving_model"
    version = client.create_model_version(name, source, run_id=run_id)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version.version, key, value)
    return run_id


def _foreign_serving_folder(good, export_dir, tmp_path, canary):
    """kerasflow's serving-model layout around a foreign SavedModel that writes ``canary``."""
    import tensorflow as tf

    class Foreign(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes):
            tf.io.write_file(str(canary), image_bytes[0])
            return {"probabilities": tf.zeros([tf.shape(image_bytes)[0], 10])}

    folder = shutil.copytree(good, tmp_path / "foreign")
    saved = folder / "artifacts" / export_dir.name
    shutil.rmtree(saved)
    module = Foreign()
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    shutil.copytree(export_dir / "assets", saved / "assets", dirs_exist_ok=True)
    return folder


def test_serve_refuses_foreign_folders_through_runs_and_models_uris(
    served_run, export_dir, tracking_uri, tmp_path
):
    """Exit 2 for every case, each named in the message, and the canary is never written.

    (The same folders as local paths: the last two cases here and tests/serving/test_trust.py.)
    """
    from kerasflow.cli import cli
    from kerasflow.serving import mlflow_model as tracked

    canary = tmp_path / "canary.txt"
    good = tracked.save_serving_model(export_dir, tmp_path / "good", 0.5)
    evil = _evil_folders(good, tmp_path, canary)
    foreign = _foreign_serving_folder(good, export_dir, tmp_path, canary)
    tampered = shutil.copytree(good, tmp_path / "tampered")
    _flip_variables(tampered / "artifacts" / export_dir.name)
    client = MlflowClient(tracking_uri)
    client.create_experiment("trust-acceptance")
    recorded = {TAG: client.get_run(served_run.run_id).data.tags[TAG]}
    runs = {
        "loader": _store_model(client, "evil-loader", evil["loader_module"]),
        "shadow": _store_model(client, "evil-shadow", evil["shadowing"]),
        "foreign": _store_model(client, "evil-foreign", foreign),
        "tampered": _store_model(client, "evil-tampered", tampered, recorded),
    }
    cases = {
        "models:/evil-loader/1": "loader_module is 'kfevil'",
        "models:/evil-shadow/1": "it names code paths ('code')",
        f"runs:/{runs['shadow']}/serving_model": "it names code paths ('code')",
        f"runs:/{runs['loader']}/serving_model": "loader_module is 'kfevil'",
        "models:/evil-foreign/1 --trust-saved-model": "WriteFile (in __inference_serve",
        f"runs:/{runs['foreign']}/serving_model": "WriteFile (in __inference_serve",
        "models:/evil-tampered/1": "differs from the recorded one (tag kerasflow.export_digest",
        f"runs:/{runs['tampered']}/serving_model": f"differs from the recorded one (tag {TAG} of run",
        f"{foreign} --trust-saved-model": "WriteFile (in __inference_serve",
        str(tampered): "no trusted record holds its content digest",
    }
    # One through a real `kerasflow serve` process (started first: its start-up is mostly
    # importing TensorFlow), every case through the same CLI in this process.
    in_subprocess = ["models:/evil-loader/1"]
    procs = {
        case: subprocess.Popen(
            [sys.executable, "-m", "kerasflow", "serve", *case.split(), "--port", "1"],
            env=server_env(tracking_uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for case in in_subprocess
    }
    for case, expected in cases.items():
        result = CliRunner().invoke(
            cli, ["serve", *case.split(), "--port", "1"], env={"MLFLOW_TRACKING_URI": tracking_uri}
        )
        assert result.exit_code == 2, (case, result.output[-2000:])
        assert expected in result.output, (case, result.output[-2000:])
        if "tampered" in case:
            assert "--trust-saved-model" in result.output
            assert "A SavedModel graph is code" in result.output
    for case, proc in procs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, (case, stderr[-2000:])
        assert cases[case] in stderr, (case, stderr[-2000:])
    assert not canary.exists()


def test_mlflow_pyfunc_loader_refuses_an_export_changed_after_export(export_dir, tmp_path):
    """`mlflow models serve` path: the folder's MLmodel is MLflow's to trust, the weights are not."""
    import mlflow

    from kerasflow.errors import ServingError
    from kerasflow.serving import mlflow_model as tracked

    good = tracked.save_serving_model(export_dir, tmp_path / "good", 0.5)
    assert mlflow.pyfunc.load_model(str(good)).metadata.flavors["python_function"]
    tampered = shutil.copytree(good, tmp_path / "tampered")
    _flip_variables(tampered / "artifacts" / export_dir.name)
    with pytest.raises(ServingError, match="its files changed after export"):
        mlflow.pyfunc.load_model(str(tampered))
