import pytest

from kerasflow.config import build_config, load_config, parse_override
from kerasflow.errors import ConfigError


def test_default_config_loads_with_defaults_filled():
    cfg = load_config()
    assert cfg.experiment.name == "digits"
    assert cfg.data.source == "digits"
    assert cfg.model.name == "simple_cnn"
    assert cfg.compile.optimizer.name == "adam"
    assert cfg.train.early_stopping.patience == 15
    assert cfg.tracking.registered_model == "digits-cnn"
    assert cfg.registered_model_name == "digits-cnn"


def test_empty_config_is_valid_and_overrides_apply():
    cfg = build_config({}, ["train.epochs=3", "model.params.width=8", "compile.optimizer=sgd"])
    assert cfg.train.epochs == 3
    assert cfg.model.params == {"width": 8}
    assert cfg.compile.optimizer.name == "sgd"
    assert cfg.compile.optimizer.learning_rate == 1e-3


def test_override_values_are_yaml_typed():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=0.5") == (["a"], 0.5)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.epochs")


def test_typo_names_path_and_suggests():
    with pytest.raises(ConfigError) as err:
        build_config({"compile": {"optimiser": {"name": "adam"}}})
    msg = str(err.value)
    assert "compile.optimiser: unknown key" in msg
    assert "Did you mean 'optimizer'?" in msg
    assert "metrics" in msg  # the allowed keys are listed


def test_wrong_type_names_field_and_value():
    with pytest.raises(ConfigError) as err:
        build_config({}, ["train.epochs=many"])
    assert "train.epochs" in str(err.value) and "'many'" in str(err.value)


def test_bad_choice_lists_choices():
    with pytest.raises(ConfigError) as err:
        build_config({}, ["compile.optimizer.name=adagrad"])
    msg = str(err.value)
    assert "compile.optimizer.name" in msg and "'adagrad'" in msg and "rmsprop" in msg


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError) as err:
        build_config({"model": {"name": "resnet_50"}})
    msg = str(err.value)
    assert "model.name" in msg and "resnet50" in msg and "simple_cnn" in msg


def test_split_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match="sum to 1"):
        build_config({}, ["data.split.train=0.9"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_fingerprint_ignores_tracking_but_not_training():
    a = build_config({})
    assert a.fingerprint() == build_config({}, ["tracking.uri=sqlite:///x.db"]).fingerprint()
    assert a.fingerprint() != build_config({}, ["train.epochs=2"]).fingerprint()


def test_resolved_config_round_trips():
    cfg = build_config({}, ["train.epochs=4"])
    again = build_config(cfg.to_dict())
    assert again == cfg
