"""Registration behind the chance gate, and the contract stored with a logged model (real SQLite store)."""

import logging

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from kerasflow.errors import TrackingError
from kerasflow.tasks.base import ChanceCheck
from kerasflow.tracking import model_registry as registry
from kerasflow.tracking import start_tracker

CONTRACT = {"task": "classification", "class_names": ["cat", "dog"]}


def _model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def _logged_run(uri, accuracy, contract=CONTRACT):
    """A finished run with a logged Keras model, ``test_accuracy`` and (optionally) its contract."""
    tracker = start_tracker("registry-tests", uri)
    tracker.log_metrics({"test_accuracy": accuracy})
    if contract is not None:
        tracker.log_dict(contract, registry.CONTRACT_FILE)
    model_uri = tracker.log_keras_model(_model(), np.zeros((2, 4), np.float32))
    tracker.end("FINISHED")
    return tracker.run_id, model_uri


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_model_at_chance_is_registered_but_never_champion(uri, caplog):
    client = MlflowClient(uri)
    run_id, model_uri = _logged_run(uri, 0.10)
    chance = ChanceCheck(False, "accuracy", 0.10, 0.11, reason="test accuracy 0.100 is not above")
    with caplog.at_level(logging.WARNING, logger="kerasflow.tracking.model_registry"):
        reg = registry.register(model_uri, "m", run_id, "test_accuracy", uri=uri, gate=chance)
    assert reg.version == "1" and not reg.champion
    assert reg.not_champion_reason == chance.reason
    assert "NOT as champion: test accuracy 0.100" in caplog.text
    version = client.get_model_version("m", "1")
    assert version.tags[registry.NOT_CHAMPION_TAG] == chance.reason
    assert registry.champion_value(client, "m", "test_accuracy") == (None, None)

    # A model that passes the gate takes the alias, even when worse than a blocked one.
    run2, uri2 = _logged_run(uri, 0.08)
    passed = ChanceCheck(True, "accuracy", 0.9, 0.11)
    reg2 = registry.register(uri2, "m", run2, "test_accuracy", uri=uri, gate=passed)
    assert reg2.champion and reg2.not_champion_reason is None
    assert registry.NOT_CHAMPION_TAG not in client.get_model_version("m", "2").tags
    assert str(client.get_model_version_by_alias("m", registry.CHAMPION).version) == "2"

    # Without a gate (older callers) the metric alone decides.
    run3, uri3 = _logged_run(uri, 0.5)
    assert registry.register(uri3, "m", run3, "test_accuracy", uri=uri, tags={"k": "v"}).champion
    assert client.get_model_version("m", "3").tags["k"] == "v"


def test_contract_travels_with_the_model(uri, tmp_path):
    run_id, model_uri = _logged_run(uri, 0.9)
    registry.register(model_uri, "c", run_id, "test_accuracy", uri=uri)
    for model in (f"runs:/{run_id}/model", model_uri, "models:/c/1", "models:/c@champion"):
        assert registry.load_contract(model, uri) == CONTRACT, model
    loaded = registry.load_model("models:/c@champion", uri)
    assert registry.loaded_from(loaded) == ("models:/c@champion", uri)
    assert registry.load_contract(loaded) == CONTRACT
    # A .keras file, or a model built here, carries no stored contract.
    path = tmp_path / "m.keras"
    _model().save(path)
    assert registry.load_contract(str(path), uri) is None
    assert registry.load_contract(registry.load_model(str(path))) is None
    assert registry.load_contract(_model()) is None


def test_runs_without_or_with_a_bad_contract(uri):
    run_id, _ = _logged_run(uri, 0.9, contract=None)
    assert registry.load_contract(f"runs:/{run_id}/model", uri) is None
    bad, _ = _logged_run(uri, 0.9, contract={"class_names": ["a"]})
    with pytest.raises(
        TrackingError, match=r"contract\.json of runs:/.* must be an object with 'task'"
    ):
        registry.load_contract(f"runs:/{bad}/model", uri)
    with pytest.raises(TrackingError, match="Cannot find model"):
        registry.load_contract("models:/no-such-model/1", uri)
