"""The tune and server commands: arguments, error messages and exit codes (no training)."""

from __future__ import annotations

from click.testing import CliRunner

from kerasflow.cli import cli
from tests.tuning.helpers import tiny_config, write_config


def test_tune_without_a_tune_section_exits_2_with_a_clear_message(tmp_path):
    data = tiny_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    data.pop("tune")
    path = write_config(tmp_path / "c.yaml", data)
    result = CliRunner().invoke(cli, ["tune", path])
    assert result.exit_code == 2
    assert "no tune: section" in result.output


def test_tune_bad_space_path_is_named(tmp_path):
    data = tiny_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        tune={"space": {"compile.optimizer.lr": {"float": [1e-4, 1e-2]}}},
    )
    path = write_config(tmp_path / "c.yaml", data)
    result = CliRunner().invoke(cli, ["tune", path])
    assert result.exit_code == 2
    assert "tune.space['compile.optimizer.lr']" in result.output
    assert "unknown key" in result.output and "learning_rate" in result.output


def test_worker_and_chief_arguments_are_checked(tmp_path):
    data = tiny_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        tune={"space": {"model.params.width": {"choice": [2, 4]}}},
    )
    path = write_config(tmp_path / "c.yaml", data)
    runner = CliRunner()
    result = runner.invoke(cli, ["tune", path, "--chief"])
    assert result.exit_code == 2 and "--port" in result.output
    result = runner.invoke(cli, ["tune", path, "--worker", "1", "--chief-address", "nohost"])
    assert result.exit_code == 2 and "HOST:PORT" in result.output
    result = runner.invoke(cli, ["tune", path, "--worker", "chief", "--chief-address", "h:1"])
    assert result.exit_code == 2 and "chief" in result.output


def test_server_binds_to_loopback_by_default():
    result = CliRunner().invoke(cli, ["server", "--help"])
    assert result.exit_code == 0
    assert "127.0.0.1" in result.output
