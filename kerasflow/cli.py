"""The ``kerasflow`` command: parses arguments, calls the library, prints results.

Exit codes: 0 ok, 2 bad config or input (any :class:`kerasflow.errors.KerasflowError`),
1 anything else. Errors print one clear message; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

# TensorFlow reads this when it is first imported, which happens after parsing.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kerasflow  # noqa: E402
from kerasflow.errors import KerasflowError, Terminated  # noqa: E402

log = logging.getLogger("kerasflow")


class _Group(click.Group):
    """Turns library errors into one message and the documented exit codes."""

    def invoke(self, ctx):
        debug = ctx.params.get("debug", False)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KerasflowError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except Terminated:
            click.echo("Terminated (SIGTERM); run the same command again to resume.", err=True)
            ctx.exit(143)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
            if debug:
                traceback.print_exc()
            else:
                click.echo(
                    f"Error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)",
                    err=True,
                )
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(kerasflow.__version__, prog_name="kerasflow")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx, debug):
    """kerasflow: one YAML config to a tracked, tuned and served Keras image model."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("mlflow", "alembic", "urllib3", "absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    # Its SQL errors come with a traceback; kerasflow reports them in one line (--debug shows it).
    logging.getLogger("mlflow.store.db.utils").setLevel(
        logging.DEBUG if debug else logging.CRITICAL
    )
    if debug:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


_set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field by dotted path, e.g. --set train.epochs=5 (repeatable).",
)


def _echo_metrics(metrics: dict[str, float]) -> None:
    width = max((len(k) for k in metrics), default=0)
    for key, value in metrics.items():
        click.echo(f"  {key:<{width}}  {value:.4f}")


def _echo_registered(reg) -> None:
    if reg.champion:
        status = "champion"
    elif reg.not_champion_reason:
        status = f"NOT champion: {reg.not_champion_reason}"
    elif reg.previous_champion:
        status = f"not champion ({reg.reason or f'champion stays version {reg.previous_champion}'})"
    else:
        status = "not champion"
    click.echo(f"Registered model:  models:/{reg.name}/{reg.version} ({status})")


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@click.option(
    "--workers",
    default=None,
    metavar="HOST:PORT,...",
    help="Multi-worker training: every worker's address, worker 0 (the chief) first. "
    "Writes TF_CONFIG and implies train.strategy=multi_worker.",
)
@click.option(
    "--worker-index", type=int, default=None, help="This process's position in --workers."
)
@click.option(
    "--restart",
    is_flag=True,
    help="Discard this config's unfinished run (its resume backup and state) and train "
    "from the first epoch in a new MLflow run.",
)
def train(config, overrides, workers, worker_index, restart):
    """Train, evaluate, track and register a model (CONFIG defaults to the packaged digits config).

    Re-running the same config after Ctrl-C, SIGTERM or a crash continues the same MLflow run.
    """
    cfg = kerasflow.load_config(config, list(overrides))
    if workers is not None or worker_index is not None:
        cfg = _join_cluster(config, list(overrides), cfg, workers, worker_index)
    result = kerasflow.train(cfg, restart=restart)
    if not result.test_metrics and not result.run_id and cfg.train.strategy == "multi_worker":
        click.echo("Training finished on this worker; the chief evaluates, logs and registers.")
        return
    click.echo("")
    click.echo("Test metrics:")
    _echo_metrics(result.test_metrics)
    if result.initial_epoch:
        click.echo(f"Resumed from epoch {result.initial_epoch}.")
    if result.run_id:
        click.echo(f"MLflow run:        {result.run_id} (experiment {cfg.tracking_experiment!r})")
    if result.registered:
        _echo_registered(result.registered)
    click.echo(
        f"Open the MLflow UI: {_self_command()} ui"
        f"{'' if not cfg.tracking.uri else ' --uri ' + cfg.tracking.uri}"
    )


def _self_command() -> str:
    """How to run this kerasflow again from the same shell: ``kerasflow`` only when on PATH."""
    import shutil
    from pathlib import Path

    script = Path(sys.executable).parent / "kerasflow"
    on_path = shutil.which("kerasflow")
    if script.is_file() and (on_path is None or Path(on_path).resolve() != script.resolve()):
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    if on_path:
        return "kerasflow"
    return f"{sys.executable} -m kerasflow"


def _join_cluster(config, overrides, cfg, workers, worker_index):
    """Write TF_CONFIG for --workers/--worker-index; the config then trains multi-worker."""
    from kerasflow.errors import ConfigError
    from kerasflow.training.distribute import tf_config_json

    if workers is None or worker_index is None:
        raise ConfigError("--workers and --worker-index go together. Pass both or neither.")
    if cfg.train.strategy not in ("default", "auto", "multi_worker"):
        raise ConfigError(
            f"--workers needs train.strategy multi_worker (or auto/default, which it switches). "
            f"Received: train.strategy={cfg.train.strategy!r}"
        )
    os.environ["TF_CONFIG"] = tf_config_json(workers.split(","), worker_index)
    return kerasflow.load_config(config, [*overrides, "train.strategy=multi_worker"])


@cli.command()
@click.argument("model")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    help="Run config (default: the model's run's config).",
)
@click.option(
    "--split", default="test", show_default=True, type=click.Choice(["train", "validation", "test"])
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the report files.",
)
@click.option(
    "--log-to-run",
    is_flag=True,
    help="Also log the report files to the model's MLflow run (evaluation/<split>/).",
)
@click.option(
    "--robustness",
    is_flag=True,
    help="Add corruption and adversarial robustness and explanation faithfulness "
    "(evaluate.robustness=true; settings under evaluate.* with --set).",
)
@click.option(
    "--data",
    "data_source",
    default=None,
    type=click.Path(exists=True),
    help="Evaluate on all of this folder or manifest, with the model's class names and "
    "preprocessing (--split is then ignored; the training data is not read).",
)
@_set_option
def evaluate(model, config, split, out_dir, log_to_run, robustness, data_source, overrides):
    """Evaluate MODEL (models:/NAME@alias, models:/NAME/VERSION, runs:/RUN_ID/model or a .keras file)."""
    from kerasflow.training.evaluate import evaluate_model

    split = "test" if data_source else split
    report, written = evaluate_model(
        model,
        config,
        split=split,
        out_dir=out_dir,
        overrides=[*overrides, *(["evaluate.robustness=true"] if robustness else [])],
        log_to_run=log_to_run,
        data_source=data_source,
    )
    from kerasflow import tasks
    from kerasflow.training.robustness import scalar_metrics as robustness_metrics

    click.echo(f"{split} split: {report['num_examples']} examples")
    scores = {
        **tasks.get(report["task"]).scalar_metrics(report, prefix=""),
        **robustness_metrics(report, prefix=""),
    }
    for key, value in scores.items():
        click.echo(f"  {key:<18} {value:.4f}")
    click.echo(f"Report written to {written}")
    click.echo(f"HTML report:       {written / f'report_{split}.html'}")
    if log_to_run:
        click.echo(f"Logged to the model's MLflow run under evaluation/{split}/")


@cli.command()
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--uri",
    default=None,
    help="Tracking store (default: ./mlruns/mlflow.db or $MLFLOW_TRACKING_URI).",
)
def ui(port, host, uri):
    """Open the MLflow UI on this store (bound to 127.0.0.1 unless --host says otherwise)."""
    from kerasflow.tracking.children import run_child
    from kerasflow.tracking.store import subprocess_env, ui_command

    cmd = ui_command(port=port, host=host, uri=uri)
    click.echo(f"MLflow UI on http://{host}:{port}  (Ctrl-C to stop)")
    sys.exit(run_child(cmd, env=subprocess_env()))


# ---- docs engineer: the run config's schema and resolved values
@cli.group("config")
def config_group():
    """The run config: its JSON Schema and the fully resolved values."""


@config_group.command("schema")
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the schema to this file instead of printing it.",
)
def config_schema(out):
    """Print the run config's JSON Schema (every field, its type, default and description)."""
    from pathlib import Path

    from kerasflow.config import json_schema_text

    if out is None:
        click.echo(json_schema_text(), nl=False)
    else:
        Path(out).write_text(json_schema_text())
        click.echo(f"Wrote {out}")


@config_group.command("show")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
def config_show(config, overrides):
    """Print CONFIG (default: the packaged digits config) fully resolved, defaults filled, as YAML."""
    cfg = kerasflow.load_config(config, list(overrides))
    click.echo(cfg.to_yaml(), nl=False)


@cli.command()
@click.argument("source", metavar="FOLDER|MANIFEST|tfds:NAME")
@click.option(
    "--task",
    default="classification",
    show_default=True,
    type=click.Choice(["classification", "multilabel", "segmentation", "detection"]),
)
@click.option(
    "--out",
    default="config.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to write the config.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def init(source, task, out, force):
    """Scan SOURCE once and write a commented first run config that trains as written."""
    from pathlib import Path

    from kerasflow.errors import ConfigError
    from kerasflow.training.starter import starter_config

    if Path(out).exists() and not force:
        raise ConfigError(f"{out} exists. Pass --force to overwrite it, or another --out.")
    start = starter_config(source, task=task)
    Path(out).write_text(start.text)
    click.echo(start.report.to_text())
    for warning in start.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Wrote {out}. Train it: kerasflow train {out}")


# ---- data (pipelines engineer): plan, preview, check
@cli.group()
def data():
    """Inspect the data pipeline of a run config: plan, preview, check."""


@data.command("plan")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
def data_plan(config, overrides):
    """Print the tf.data plan, step by step, for each split."""
    from kerasflow import tasks

    cfg = kerasflow.load_config(config, list(overrides))
    task = tasks.get(cfg.experiment.task)
    click.echo(task.prepare(cfg.data, cfg.experiment.seed).plan_text())


@data.command("preview")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--out", default="grid.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--count", default=16, show_default=True, type=int, help="Samples in the grid.")
@_set_option
def data_preview(config, out, count, overrides):
    """Write a grid of augmented training samples (masks overlaid) to --out."""
    from kerasflow import tasks
    from kerasflow.pipelines.preview import write_preview

    cfg = kerasflow.load_config(config, list(overrides))
    target = tasks.get(cfg.experiment.task).target
    written = write_preview(cfg.data, out, seed=cfg.experiment.seed, count=count, target=target)
    click.echo(f"Wrote {written}")


@data.command("check")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
def data_check(config, overrides):
    """Scan every file once; report bad files, class counts and image sizes.

    Exits 2 when it finds bad data (the code for bad input), 0 when all is well.
    """
    from kerasflow import tasks
    from kerasflow.pipelines.check import check_data

    cfg = kerasflow.load_config(config, list(overrides))
    report = check_data(cfg.data, tasks.get(cfg.experiment.task).target)
    click.echo(report.to_text())
    if not report.ok:
        sys.exit(2)


# ---- evaluation engineer: compare runs, explain predictions
@cli.command()
@click.argument("refs", nargs=-1, required=True, metavar="RUN_ID_OR_EXPERIMENT...")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="Metric to compare (repeatable; default: test accuracy, F1, AUC, ECE, IoU, loss).",
)
@click.option(
    "--uri", default=None, help="Tracking store (default: ./mlruns or $MLFLOW_TRACKING_URI)."
)
@click.option(
    "--out",
    "out_dir",
    default="comparison",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for comparison.csv/.json/.md/.png.",
)
def compare(refs, metrics, uri, out_dir):
    """Compare runs (run ids, or all runs of an experiment by name): a table and a plot."""
    from kerasflow.training.comparison import compare_runs

    result = compare_runs(list(refs), list(metrics) or None, uri=uri, out_dir=out_dir)
    click.echo(result.to_text())
    click.echo("")
    for metric in result.metrics:
        best = result.best(metric)
        if best:
            click.echo(f"best {metric}: {best}")
    click.echo(f"Table and plot written to {out_dir} (comparison.csv, comparison.png)")


@cli.command()
@click.argument("model")
@click.option(
    "--images",
    "images",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Image file to explain (repeatable; --images a.png --images b.png).",
)
@click.argument("more_images", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--method",
    default="gradcam",
    show_default=True,
    type=click.Choice(["gradcam", "gradcam++", "saliency", "integrated_gradients"]),
)
@click.option("--target", type=int, default=None, help="Class id to explain (default: predicted).")
@click.option("--layer", default=None, help="Grad-CAM feature-map layer (default: last conv).")
@click.option(
    "--steps", default=32, show_default=True, type=int, help="Integrated Gradients steps."
)
@click.option(
    "--baseline",
    default="zeros",
    show_default=True,
    help="Integrated Gradients baseline: zeros, mean or a number.",
)
@click.option("--samples", default=0, show_default=True, type=int, help="SmoothGrad samples.")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    help="Run config for preprocessing (default: the model's run's config).",
)
@_set_option
def explain(
    model,
    images,
    more_images,
    out_dir,
    method,
    target,
    layer,
    steps,
    baseline,
    samples,
    config,
    overrides,
):
    """Explain MODEL's predictions on image files; write one heatmap overlay per image."""
    from kerasflow.training.explain import explain_files

    try:
        baseline_value = float(baseline)
    except ValueError:
        baseline_value = baseline
    rows = explain_files(
        model,
        [*images, *more_images],
        out_dir,
        method=method,
        target=target,
        config=config,
        overrides=list(overrides),
        layer=layer,
        steps=steps,
        baseline=baseline_value,
        samples=samples,
    )
    for row in rows:
        pred = row.get("predicted_name", row["predicted"])
        tgt = row.get("target_name", row["target"])
        click.echo(
            f"{row['image']}: predicted {pred} ({row['probability']:.3f}), "
            f"explained {tgt} -> {row['overlay']}"
        )


# ---- serving engineer: export, serve
@cli.command("export")
@click.argument("model")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="TF Serving base folder.",
)
@click.option(
    "--version", "version", default=None, type=int, help="Version subfolder (default: next free)."
)
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    help="Run config (default: the model's run's config).",
)
@click.option(
    "--format",
    "fmt",
    default="saved_model",
    show_default=True,
    type=click.Choice(["saved_model", "litert", "onnx"]),
    help="litert / onnx: a portable artefact in OUT taking uint8 pixels, verified on the test split.",
)
@click.option(
    "--quantize",
    default="none",
    show_default=True,
    type=click.Choice(["none", "float16", "dynamic", "int8"]),
    help="LiteRT/ONNX quantisation (float16: LiteRT only; int8 calibrates on training images).",
)
@click.option(
    "--max-metric-drop",
    type=float,
    default=None,
    help="Exit 1 when the artefact's test metric is more than this below the Keras model's.",
)
@click.option("--no-verify", is_flag=True, help="Skip the verification of a LiteRT/ONNX artefact.")
@_set_option
def export_cmd(
    model, out_dir, version, config, fmt, quantize, max_metric_drop, no_verify, overrides
):
    """Export MODEL: a SavedModel in the TF Serving layout OUT/<version>/, or a LiteRT/ONNX artefact."""
    if fmt != "saved_model" or quantize != "none":
        _export_portable(
            model, out_dir, fmt, quantize, config, overrides, max_metric_drop, no_verify
        )
        return
    exported = kerasflow.export(
        model, out_dir, version=version, config=config, overrides=list(overrides)
    )
    click.echo(f"Exported version {exported.version} to {exported.path}")
    click.echo(f"Content digest: {exported.digest}  (kerasflow serve --saved-model-digest)")
    click.echo(f"Inspect it: saved_model_cli show --dir {exported.path} --all")


def _export_portable(model, out_dir, fmt, quantize, config, overrides, max_metric_drop, no_verify):
    from kerasflow.serving.formats import export_model
    from kerasflow.serving.verify import table_text

    report = export_model(
        model,
        out_dir,
        fmt,
        quantize,
        config=config,
        overrides=list(overrides),
        max_metric_drop=max_metric_drop,
        verify_split=None if no_verify else "test",
    )
    for art in report.artefacts:
        click.echo(
            f"Exported {art.path} ({art.size_bytes / 1024:.1f} KB), contract {art.contract_path}"
        )
    if report.verification:
        click.echo(f"Verified on the test split ({report.verification[0]['examples']} images):")
        click.echo(table_text(report.verification))


@cli.command()
@click.argument("model")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Bind address (0.0.0.0 exposes it)."
)
@click.option("--port", default=5001, show_default=True, type=int)
@click.option(
    "--max-payload-mb",
    default=None,
    type=float,
    help="Larger request bodies get HTTP 413 (default: the run's export.max_payload_mb, else 16).",
)
@click.option(
    "--max-image-pixels",
    default=None,
    type=int,
    help="Pixels one image may declare in its header, and a request's images together "
    "(default 40000000); more gets HTTP 413 before anything is decoded.",
)
@click.option(
    "--max-batch",
    default=None,
    type=int,
    help="Images one request may hold (default 256); more gets HTTP 413.",
)
@click.option(
    "--saved-model-digest",
    default=None,
    metavar="SHA256",
    help="The digest `kerasflow export` printed: serve a local export folder that the "
    "tracking store does not record.",
)
@click.option(
    "--trust-saved-model",
    is_flag=True,
    help="Serve a SavedModel whose digest no trusted record holds (a SavedModel graph is "
    "code: only for sources you trust). Graphs with file or process ops are still refused.",
)
@click.option(
    "--memory-pool",
    is_flag=True,
    help="Keep TensorFlow's oneDNN memory pool: faster for large batches of large models "
    "(MobileNetV2, 16 images: 0.79x the latency), but the server keeps the peak memory of any "
    "request (one 36 MP image: 1 GB). By default memory goes back after each request.",
)
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="Run config for a .keras file."
)
@_set_option
def serve(
    model,
    host,
    port,
    max_payload_mb,
    max_image_pixels,
    max_batch,
    saved_model_digest,
    trust_saved_model,
    memory_pool,
    config,
    overrides,
):
    """Serve MODEL over HTTP (POST /invocations, GET /ping, /health, /version).

    MODEL may also be a LiteRT (.tflite) or ONNX (.onnx) artefact from
    `kerasflow export --format`: same API and request checks, run by its own runtime.

    Only what kerasflow exported is loaded, as data: a serving model folder
    that is not exactly kerasflow's, a SavedModel whose content digest the
    tracking store (or --saved-model-digest) does not record, or a graph with
    file-system or process ops, is refused (exit 2) before anything of it runs.
    """
    from kerasflow.serving.server import serve as serve_model

    def ready(url):
        click.echo(f"Serving {model} on {url}/invocations  (Ctrl-C to stop)", err=True)

    serve_model(
        model,
        host=host,
        port=port,
        max_payload_mb=max_payload_mb,
        config=config,
        overrides=list(overrides),
        on_ready=ready,
        max_image_pixels=max_image_pixels,
        max_batch=max_batch,
        trust_saved_model=trust_saved_model,
        saved_model_digest=saved_model_digest,
        memory_pool=memory_pool,
    )


@cli.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, per image.")
@click.option(
    "--saved-model-digest",
    default=None,
    metavar="SHA256",
    help="The digest `kerasflow export` printed: use a local SavedModel export that the "
    "tracking store does not record (as for serve).",
)
@click.option(
    "--trust-saved-model",
    is_flag=True,
    help="Use a SavedModel whose digest no trusted record holds (a SavedModel graph is code).",
)
@click.option(
    "--config", "config", type=click.Path(dir_okay=False), help="Run config for a .keras file."
)
@_set_option
def predict(model, images, as_json, saved_model_digest, trust_saved_model, config, overrides):
    """Predict IMAGES with MODEL: a .tflite/.onnx artefact, a SavedModel export or a model URI.

    A LiteRT or ONNX artefact runs with its own runtime and never imports TensorFlow.
    """
    import json

    from kerasflow.serving.predict import predict_paths, summary

    results = predict_paths(
        model,
        list(images),
        config=config,
        overrides=list(overrides),
        trust_saved_model=trust_saved_model,
        saved_model_digest=saved_model_digest,
    )
    for result in results:
        click.echo(json.dumps(result) if as_json else f"{result['path']}: {summary(result)}")


# ---- tuning engineer: tune, server
@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_set_option
@click.option(
    "--overwrite", is_flag=True, help="Discard a saved search of the same name and start again."
)
@click.option("--chief", is_flag=True, help="Serve the oracle for workers (distributed tuning).")
@click.option("--port", default=None, type=int, help="--chief: the oracle's gRPC port.")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="--chief: address to bind the oracle to."
)
@click.option("--worker", "worker", default=None, metavar="ID", help="Run trials for a chief.")
@click.option("--chief-address", default=None, metavar="HOST:PORT", help="--worker: the chief.")
def tune(config, overrides, overwrite, chief, port, host, worker, chief_address):
    """Search hyperparameters with the tune: section of CONFIG (re-run to resume).

    CONFIG defaults to the packaged digits search (configs/digits_tune.yaml).
    """
    from kerasflow.config import default_config_path

    if config is None:
        config = str(default_config_path().with_name("digits_tune.yaml"))
    cfg = kerasflow.load_config(config, list(overrides))
    result = kerasflow.tune(
        cfg,
        overwrite=overwrite,
        chief=chief,
        port=port,
        host=host,
        worker=worker,
        chief_address=chief_address,
    )
    done = sum(r["status"] == "COMPLETED" for r in result.trials)
    click.echo("")
    if result.role == "worker":
        click.echo(f"Worker {worker} ran {result.num_trials} trial(s) ({done} completed).")
        return
    click.echo(f"Trials: {result.num_trials} ({done} completed) in {result.project_dir}")
    click.echo(
        f"Best trial {result.best_trial_id}: {result.objective} = {result.best_objective:.4f}"
    )
    for key, value in result.best_hyperparameters.items():
        click.echo(f"  {key:<40} {value}")
    if result.test_metrics:
        click.echo("Test metrics of the best trial's best epoch:")
        _echo_metrics(result.test_metrics)
    if result.parent_run_id:
        click.echo(
            f"MLflow search run: {result.parent_run_id} (experiment {cfg.tracking_experiment!r})"
        )
    if result.registered:
        _echo_registered(result.registered)


@cli.command()
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; 0.0.0.0 exposes the server to the network (no authentication).",
)
@click.option(
    "--backend-store-uri",
    default=None,
    help="Run and registry store (default: ./mlruns/mlflow.db or $MLFLOW_TRACKING_URI).",
)
@click.option(
    "--artifacts-destination",
    default=None,
    help="Where the server stores artifacts (default: beside the SQLite store).",
)
def server(port, host, backend_store_uri, artifacts_destination):
    """Start an MLflow tracking server for a team (tuning workers log to it)."""
    from kerasflow.tracking.children import run_child
    from kerasflow.tracking.store import server_command, subprocess_env

    cmd = server_command(
        port=port,
        host=host,
        backend_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
    )
    click.echo(f"MLflow tracking server on http://{host}:{port}  (Ctrl-C to stop)")
    click.echo(f"Point runs at it: tracking.uri: http://{host}:{port}  (or MLFLOW_TRACKING_URI)")
    sys.exit(run_child(cmd, env=subprocess_env()))


@cli.group()
def models():
    """The model zoo: registered model names and their sizes."""


@models.command("list")
@click.option("--name", "names", multiple=True, help="Only this model (repeatable).")
@click.option(
    "--task",
    type=click.Choice(["classification", "segmentation", "detection"]),
    default=None,
    help="Only models of this kind (multilabel tasks use classification models).",
)
@click.option(
    "--counts/--no-counts",
    default=True,
    show_default=True,
    help="Build each model at 224x224x3 / 1000 classes to count parameters and MACs (slow).",
)
def models_list(names, task, counts):
    """Table of model names, parameters and multiply-accumulates at 224x224x3 / 1000 classes."""
    from kerasflow.models import get_spec
    from kerasflow.models import names as registered
    from kerasflow.models.table import format_count, model_row

    chosen = list(names) or registered(task)
    for name in chosen:
        get_spec(name)  # unknown names fail before any model is built
    click.echo(f"{'name':<16} {'kind':<14} {'params':>14} {'MACs':>10}")
    for name in chosen:
        if not counts:
            click.echo(f"{name:<16} {get_spec(name).kind:<14}")
            continue
        row = model_row(name)
        click.echo(
            f"{row['name']:<16} {row['kind']:<14} {row['params']:>14,} "
            f"{format_count(row['macs']):>10}"
        )


def main(argv=None):
    """Console-script entry point."""
    cli.main(args=argv, prog_name="kerasflow")


if __name__ == "__main__":
    main()
