"""The documentation: README and docs pages name only commands that exist, the site builds strictly."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from kerasflow.cli import cli
from kerasflow.config import build_config, json_schema
from tests.net import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def _kerasflow_commands(path: Path) -> list[list[str]]:
    """Every ``kerasflow ...`` command line of the file's bash blocks, as tokens."""
    commands = []
    for block in _blocks(path, "bash"):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line.startswith("kerasflow"):
                commands.append(shlex.split(line)[1:])
    return commands


def _resolve(tokens: list[str]) -> tuple[click.Command, list[str]]:
    """The click command the tokens name, and the option names used on it."""
    command: click.Command = cli
    rest = list(tokens)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        assert name in command.commands, f"`kerasflow ... {name}`: no such command"
        command = command.commands[name]
    flags = [t.split("=")[0] for t in rest if t.startswith("--")]
    return command, flags


def _check_exists(tokens: list[str], where: str) -> None:
    command, flags = _resolve(tokens)
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    known |= {"--help", "--version", "--debug"}
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{where}: `kerasflow {' '.join(tokens)}` uses unknown flags {unknown}"


def test_readme_is_short_and_links_exist():
    text = README.read_text()
    assert len(text.splitlines()) < 200
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing file: {target}"


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_and_flag_exists(path):
    for tokens in _kerasflow_commands(path):
        _check_exists(tokens, str(path.relative_to(ROOT)))


def test_checker_catches_a_wrong_flag_and_command():
    with pytest.raises(AssertionError, match="unknown flags"):
        _check_exists(["train", "--epochs", "5"], "x")
    with pytest.raises(AssertionError, match="no such command"):
        _check_exists(["trian"], "x")


def test_readme_cheap_commands_run(tmp_path, monkeypatch):
    """The README's commands that need no training run here, as written, in order."""
    from tests.training.digits_folder import write_digits_folder

    monkeypatch.chdir(tmp_path)
    write_digits_folder(tmp_path / "path" / "to" / "images", size=8, classes=[0, 1], per_class=6)
    cheap = (["init"], ["config", "show"], ["config", "schema"], ["data", "check"], ["models"])
    ran = []
    for tokens in _kerasflow_commands(README):
        if any(tokens[: len(c)] == c for c in cheap):
            result = CliRunner().invoke(cli, tokens)
            assert result.exit_code == 0, (tokens, result.output)
            ran.append(" ".join(tokens[:2]))
    assert ran == [
        "init path/to/images",
        "config show",
        "data check",
        "models list",
        "config schema",
    ]
    assert Path("my.yaml").is_file() and Path("kerasflow-schema.json").is_file()


def test_readme_config_example_is_a_valid_config():
    (block,) = [b for b in _blocks(README, "yaml") if "experiment:" in b]
    cfg = build_config(yaml.safe_load(block))
    assert cfg.model.name == "resnet18" and cfg.compile.schedule.name == "cosine"


def _hook():
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "docs" / "hooks" / "config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_lists_every_field_with_its_description():
    page = _hook().render()
    schema = json_schema()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for name in schema["properties"]:
        assert f"## `{name}`" in page
    # every property of every section reached from the top has a row with its description
    total = sum(len(d.get("properties", {})) for d in schema["$defs"].values())
    assert len(rows) >= total
    assert all(row.rstrip(" |").rsplit("|", 1)[-1].strip() for row in rows)
    assert "| `data.batch_size` | int | `64` | >= 1 | examples per batch" in page
    assert '| `experiment.task` | choice | `"classification"` |' in page


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The docs site built as `make test` builds it (strict: a warning fails the build)."""
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return site


@pytest.mark.slow
def test_mkdocs_build_strict(site):
    reference = (site / "config-reference" / "index.html").read_text()
    assert "data.on_bad_image" in reference and "tracking.champion_metric" in reference
    assert "load_config" in (site / "api" / "index.html").read_text()


@pytest.mark.slow
def test_browser_finds_the_docs_and_the_runs_dataset_and_system_metrics(
    site, digits_result, tracking_uri
):
    """Chromium (the system package, driven by playwright) reads the built site and the MLflow UI."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the system Chromium is needed: apt-get install -y chromium (.ci/run does)"
    client = MlflowClient(tracking_uri)
    run = client.get_run(digits_result.run_id)
    train_input = next(
        di.dataset for di in run.inputs.dataset_inputs if di.dataset.name == "digits:train"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasflow", "ui", "--port", str(port), "--uri", tracking_uri],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto((site / "config-reference" / "index.html").as_uri())
            page.locator("article td code", has_text="data.on_bad_image").first.wait_for()
            page.goto((site / "tracking" / "index.html").as_uri())
            page.locator("article h2", has_text="Datasets and system metrics").wait_for()

            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/health", proc)
            run_page = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            page.goto(run_page)
            page.get_by_text("digits:train").first.wait_for(timeout=120_000)
            assert train_input.digest in page.inner_text("body")
            page.goto(f"{run_page}/system-metrics")
            page.get_by_text("cpu_utilization_percentage").first.wait_for(timeout=120_000)
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
