"""Search-space parsing, validation against the run config, and Keras Tuner declaration."""

from __future__ import annotations

import keras_tuner
import pytest

from kerasflow.config import build_config
from kerasflow.errors import ConfigError
from kerasflow.tuning.search_space import (
    active_values,
    apply_values,
    declare,
    first_values,
    parse_space,
    validate_space,
)

SPACE = {
    "model.name": {"choice": ["simple_cnn", "mobilenet_v2"]},
    "model.params.width": {"choice": [8, 16, 32], "when": {"model.name": "simple_cnn"}},
    "model.params.alpha": {"choice": [0.35, 0.5], "when": {"model.name": ["mobilenet_v2"]}},
    "compile.optimizer.learning_rate": {"float": [1e-4, 1e-2], "sampling": "log"},
    "model.params.depth": {"int": [1, 3], "step": 1, "when": {"model.name": "simple_cnn"}},
    "data.augment.rotation": {"float": [0.0, 0.2]},
    "data.augment.horizontal_flip": {"boolean": False},
    "compile.optimizer.name": {"fixed": "adam"},
}


def test_every_type_is_parsed():
    specs = {s.path: s for s in parse_space(SPACE)}
    assert specs["model.name"].kind == "choice"
    assert specs["model.name"].values == ("simple_cnn", "mobilenet_v2")
    assert specs["model.params.width"].when == {"model.name": ("simple_cnn",)}
    lr = specs["compile.optimizer.learning_rate"]
    assert (lr.kind, lr.low, lr.high, lr.sampling) == ("float", 1e-4, 1e-2, "log")
    depth = specs["model.params.depth"]
    assert (depth.kind, depth.low, depth.high, depth.step) == ("int", 1, 3, 1)
    assert specs["data.augment.horizontal_flip"].choices == (False, True)
    assert specs["compile.optimizer.name"].values == ("adam",)
    # Parents come before the parameters that depend on them.
    order = [s.path for s in parse_space(SPACE)]
    assert order.index("model.name") < order.index("model.params.width")


def test_mixed_ints_and_floats_become_floats():
    (spec,) = parse_space({"data.augment.zoom": {"choice": [0, 0.1]}})
    assert spec.values == (0.0, 0.1)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model.params.width": {"choise": [8]}}, "unknown key(s) ['choise']"),
        ({"model.params.width": {"choice": []}}, "non-empty list"),
        ({"model.params.width": {"choice": [8, "x"]}}, "one type"),
        ({"model.params.width": {"choice": [8, 8]}}, "distinct"),
        ({"model.params.width": [8, 16]}, "mapping with one type key"),
        ({"model.params.width": {"int": [1.5, 3]}}, "integers"),
        ({"model.params.width": {"int": [3, 1]}}, "low must be below high"),
        ({"compile.optimizer.learning_rate": {"float": [0, 1], "sampling": "log"}}, "low > 0"),
        ({"model.params.width": {"choice": [8], "int": [1, 2]}}, "exactly one type"),
        ({"model.params.width": {"choice": [8], "step": 2}}, "int and float only"),
        ({"bad path!": {"choice": [8]}}, "dotted path"),
        ({"tune.max_trials": {"choice": [1, 2]}}, "cannot be searched"),
        (
            {"model.params.width": {"choice": [8], "when": {"model.name": "vgg11"}}},
            "not a parameter",
        ),
        (
            {
                "a.b": {"fixed": 1, "when": {"model.name": "x"}},
                "model.name": {"choice": ["simple_cnn"]},
            },
            "never takes",
        ),
        (
            {"a.x": {"fixed": 1, "when": {"a.y": 1}}, "a.y": {"fixed": 1, "when": {"a.x": 1}}},
            "cycle",
        ),
    ],
)
def test_bad_specs_name_the_path(space, message):
    with pytest.raises(ConfigError) as err:
        parse_space(space)
    path = next(iter(space))
    assert f"tune.space[{path!r}]" in str(err.value)
    assert message in str(err.value)


def test_config_rejects_a_bad_space_with_the_path():
    with pytest.raises(ConfigError) as err:
        build_config({"tune": {"space": {"model.params.width": {"float": [1, "x"]}}}})
    assert "tune.space['model.params.width']" in str(err.value)


def test_tune_section_defaults_and_shorthand():
    cfg = build_config({"tune": {"objective": "val_loss", "tuner": "hyperband", "space": SPACE}})
    assert cfg.tune.objective.name == "val_loss"
    from kerasflow.tuning.oracles import resolve_objective

    assert resolve_objective(cfg)[1] == "min"
    assert cfg.tune.search_name == "hyperband"
    assert cfg.tune.directory == "tuning"
    with pytest.raises(ConfigError, match="tune.tuner"):
        build_config({"tune": {"tuner": "genetic"}})


def test_validate_space_accepts_each_conditional_branch():
    validate_space(build_config({}).to_dict(), parse_space(SPACE))


@pytest.mark.parametrize(
    ("space", "named"),
    [
        ({"compile.optimizer.lr": {"float": [1e-4, 1e-2]}}, "compile.optimizer.lr"),
        ({"data.augment.rotation": {"float": [0.5, 2.0]}}, "data.augment.rotation"),
        ({"model.params.widht": {"choice": [8, 16]}}, "model.params.widht"),
        ({"train.epochs": {"choice": ["many"]}}, "train.epochs"),
    ],
)
def test_validate_space_rejects_bad_paths_and_values(space, named):
    with pytest.raises(ConfigError) as err:
        validate_space(build_config({}).to_dict(), parse_space(space))
    assert f"tune.space[{named!r}]" in str(err.value)


def test_apply_values_sets_paths_and_resets_params_on_model_change():
    base = build_config({"model": {"params": {"width": 32, "bn_momentum": 0.9}}}).to_dict()
    specs = parse_space(SPACE)
    data = apply_values(base, specs, {"model.name": "mobilenet_v2", "model.params.alpha": 0.5})
    # a new model resets its params; model.pretrained (not a builder param) stays as it was
    assert data["model"] == {"name": "mobilenet_v2", "params": {"alpha": 0.5}, "pretrained": None}
    assert "tune" not in data
    data = apply_values(
        base,
        specs,
        {"model.name": "simple_cnn", "model.params.width": 8, "model.params.alpha": 0.5},
    )
    # alpha is inactive for simple_cnn, so it is not applied; other params are kept.
    assert data["model"]["params"] == {"width": 8, "bn_momentum": 0.9}
    assert active_values(specs, {"model.name": "simple_cnn", "model.params.alpha": 0.5}) == {
        "model.name": "simple_cnn"
    }


def test_first_values_activates_the_forced_branch():
    specs = {s.path: s for s in parse_space(SPACE)}
    values = first_values(list(specs.values()), specs["model.params.alpha"])
    assert values["model.name"] == "mobilenet_v2"
    assert values["model.params.alpha"] == 0.35
    assert "model.params.width" not in values


def test_declare_builds_conditional_keras_tuner_space():
    hp = keras_tuner.HyperParameters()
    declare(hp, parse_space(SPACE))
    names = {p.name for p in hp.space}
    assert names == set(SPACE)
    assert hp.values["model.name"] == "simple_cnn"
    width = next(p for p in hp.space if p.name == "model.params.width")
    alpha = next(p for p in hp.space if p.name == "model.params.alpha")
    assert hp.is_active(width) and not hp.is_active(alpha)
    lr = next(p for p in hp.space if p.name == "compile.optimizer.learning_rate")
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")


def test_packaged_digits_search_starts_from_the_default_config():
    # digits_tune.yaml is digits.yaml plus a tune: section whose first trial is that config,
    # so its search can only register something it compared with the default.
    from kerasflow.config import default_config_path, load_config

    default = load_config(default_config_path())
    search = load_config(default_config_path().with_name("digits_tune.yaml"))
    assert search.fingerprint() == default.fingerprint()
    assert search.tracking == default.tracking
    specs = parse_space(search.tune.space)
    validate_space(search.to_dict(), specs)
    data = default.to_dict()
    for path, value in first_values(specs).items():
        node = data
        for key in path.split("."):
            node = node[key]
        assert value == node, path
    assert search.tune.tuner == "grid" and search.tune.objective.name == "val_loss"
    combos = 1
    for spec in specs:
        combos *= len(spec.choices)
    assert search.tune.max_trials >= combos  # the whole grid runs
