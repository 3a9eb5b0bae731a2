"""A logged model carries its contract; a model at chance is registered but never champion.

Real runs on folders of PNG files the tests write, tracked in a real SQLite
store under ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

import kerasflow
from kerasflow.errors import DataError
from kerasflow.serving.export import contract_for
from kerasflow.tracking import model_registry as registry
from kerasflow.training.evaluate import evaluate_model

# Class folder names and the grey level of their images: the order on disk is not the id order.
LEVELS = {"zebra": 40, "apple": 128, "mango": 215}
NAMES = sorted(LEVELS)  # ['apple', 'mango', 'zebra']


def write_grey_folder(root, per_class: int = 30):
    """``root/<name>/<i>.png``: 8x8 grey images around each class's level, with noise."""
    rng = np.random.default_rng(0)
    for name, level in LEVELS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(level + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").save(root / name / f"{i:03d}.png")
    return root


def _config(tmp_path, source, name, *extra):
    return kerasflow.load_config(
        None,
        [
            f"data.source={source}",
            "data.image_size=[8, 8]",
            "data.batch_size=8",
            "data.augment.rotation=0",
            "data.augment.translation=0",
            "model.params={width: 8, depth: 1, dense_units: 16}",
            "compile.schedule.warmup_epochs=0",
            "compile.optimizer.learning_rate=0.01",
            "train.epochs=6",
            "train.verbose=0",
            "train.explain_images=0",
            "train.early_stopping.enabled=false",
            f"experiment.name={name}",
            f"tracking.registered_model={name}",
            f"experiment.work_dir={tmp_path / 'runs'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
            *extra,
        ],
    )


def test_export_and_evaluate_of_a_logged_model_after_its_folder_moved(tmp_path):
    folder = write_grey_folder(tmp_path / "greys")
    names = NAMES
    cfg = _config(tmp_path, folder, "moved")
    result = kerasflow.train(cfg)
    uri = cfg.tracking.uri
    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(result.run_id)}
    assert "contract.json" in logged, logged
    stored = registry.load_contract(f"runs:/{result.run_id}/model", uri)
    assert {k: stored[k] for k in ("task", "class_names")} == {
        "task": "classification",
        "class_names": names,
    }
    # what the model expects of an image travels too
    assert stored["preprocessing"] == cfg.data.preprocessing()
    assert stored["preprocessing"]["image_size"] == list(cfg.data.image_size)
    assert stored["preprocessing"]["channels"] == cfg.data.channels
    assert stored["preprocessing"]["normalize"] == cfg.data.normalize
    version = client.get_model_version(cfg.registered_model_name, result.registered.version)
    assert version.tags[registry.CONTRACT_TAG] == f"runs:/{result.run_id}/contract.json"

    shutil.move(folder, tmp_path / "elsewhere")
    assert not folder.exists()

    exported = kerasflow.export(f"runs:/{result.run_id}/model", out=tmp_path / "export")
    assert exported.class_names == names
    assets = exported.path / "assets"
    assert (assets / "class_names.txt").read_text().split() == names
    assert json.loads((assets / "kerasflow.json").read_text())["class_names"] == names
    # The registry alias and a loaded model find the same contract, without the data.
    model_uri = f"models:/{cfg.registered_model_name}@champion"
    assert contract_for(cfg, model_uri)["class_names"] == names
    assert contract_for(cfg, registry.load_model(model_uri, uri))["class_names"] == names

    # Evaluation scores the model on data, so it needs data and says how to give it.
    with pytest.raises(DataError) as err:
        evaluate_model(
            model_uri, split="test", out_dir=tmp_path / "eval", overrides=[f"tracking.uri={uri}"]
        )
    message = str(err.value)
    assert str(folder) in message and "--set data.source=" in message
    assert "class names travel with it" in message

    # Pointed at the moved data it evaluates with the stored class names.
    report, out = evaluate_model(
        model_uri,
        split="test",
        out_dir=tmp_path / "eval",
        overrides=[f"tracking.uri={uri}", f"data.source={tmp_path / 'elsewhere'}"],
    )
    assert report["class_names"] == names
    assert report["accuracy"] == pytest.approx(result.test_metrics["test_accuracy"])
    assert (out / "report_test.html").is_file()


def test_evaluate_refuses_data_whose_classes_are_not_the_models(tmp_path):
    folder = write_grey_folder(tmp_path / "greys")
    cfg = _config(tmp_path, folder, "renamed", "tracking.register_model=false")
    result = kerasflow.train(cfg)
    (folder / "zebra").rename(folder / "horse")  # sorts before mango: ids would shift
    trained = r"\['apple', 'mango', 'zebra'\]"
    match = rf"has classes \['apple', 'horse', 'mango'\] but runs:/.* was trained on {trained}"
    with pytest.raises(DataError, match=match):
        evaluate_model(
            f"runs:/{result.run_id}/model",
            out_dir=tmp_path / "eval",
            overrides=[f"tracking.uri={cfg.tracking.uri}"],
        )


def test_a_model_at_chance_finishes_but_is_not_champion(tmp_path):
    # Both classes hold the same images: no model can tell them apart.
    rng = np.random.default_rng(0)
    for i in range(24):
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        for name in ("left", "right"):
            (tmp_path / "same" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "L").save(tmp_path / "same" / name / f"{i}.png")
    cfg = _config(tmp_path, tmp_path / "same", "chance")
    result = kerasflow.train(cfg)
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    reason = run.data.tags[registry.NOT_CHAMPION_TAG]
    assert "is not above the chance level 0.500" in reason
    reg = result.registered
    assert reg is not None and not reg.champion and reg.not_champion_reason == reason
    version = client.get_model_version(cfg.registered_model_name, reg.version)
    assert version.tags[registry.NOT_CHAMPION_TAG] == reason
    assert not version.aliases
