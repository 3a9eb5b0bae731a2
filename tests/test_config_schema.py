"""The run config's JSON Schema: every field described, shipped with the package, shown by the CLI."""

import json

import yaml
from click.testing import CliRunner

from kerasflow.cli import cli
from kerasflow.config import (
    build_config,
    default_config_path,
    json_schema,
    json_schema_text,
    packaged_schema_path,
)


def _properties(schema):
    """(section, field, property) for every property of the schema, nested sections included."""
    for name, prop in schema["properties"].items():
        yield "RunConfig", name, prop
    for section, definition in schema["$defs"].items():
        for name, prop in definition.get("properties", {}).items():
            yield section, name, prop


def test_every_field_has_a_description():
    rows = list(_properties(json_schema()))
    assert len(rows) > 150  # the walk reaches the nested sections
    missing = [f"{s}.{n}" for s, n, p in rows if not str(p.get("description", "")).strip()]
    assert missing == [], f"config fields without description=: {missing}"


def test_packaged_schema_file_is_the_live_schema():
    # Regenerate with: kerasflow config schema --out kerasflow/configs/schema.json
    assert packaged_schema_path().read_text() == json_schema_text()


def test_packaged_configs_point_editors_at_the_schema():
    configs = sorted(default_config_path().parent.glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=schema.json", path
        assert (path.parent / "schema.json").is_file()


def test_schema_accepts_the_shorthands_loading_accepts():
    compile_props = json_schema()["$defs"]["CompileConfig"]["properties"]
    assert {"type": "string"} in compile_props["optimizer"]["anyOf"]
    assert build_config({"compile": {"optimizer": "sgd"}}).compile.optimizer.name == "sgd"


def test_config_schema_command_prints_the_schema():
    result = CliRunner().invoke(cli, ["config", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json_schema()


def test_config_show_prints_the_resolved_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 4\n")
    result = CliRunner().invoke(cli, ["config", "show", str(cfg), "--set", "data.batch_size=8"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["train"]["epochs"] == 4 and shown["data"]["batch_size"] == 8
    assert shown["train"]["early_stopping"]["patience"] == 10  # a default, filled in
    assert build_config(shown).to_dict() == shown  # what it prints loads back as itself


def test_config_show_names_a_bad_field():
    result = CliRunner().invoke(cli, ["config", "show", "--set", "train.epoch=3"])
    assert result.exit_code == 2 and "train.epoch: unknown key" in result.output
