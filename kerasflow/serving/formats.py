"""Exporting a model in several formats at once, each portable artefact verified.

``FORMAT[:QUANTIZE]`` names one artefact: ``saved_model``, ``litert``,
``litert:int8``, ``onnx:dynamic``... (:func:`parse_format`). :func:`export_formats`
writes them all for one model: the SavedModel in the TF Serving layout
(``OUT/<version>/``), the LiteRT and ONNX artefacts in ``OUT/portable/`` (or
``OUT`` itself for ``kerasflow export --format``), calibrates int8 on the
run's own training pixels (no augmentation), then verifies every portable
artefact on the test split (:mod:`kerasflow.serving.verify`), writes the
table beside them (``verification.json``) and into each contract (the JSON
beside the artefact and a LiteRT file's embedded copy), logs it to the model's MLflow run
(``export/verification.json``, an MLflow table) and tags the registered
version, and finally applies ``max_metric_drop``.

When several conversions run in one call, each runs in a child process
(``python -m kerasflow.serving.convert``): TensorFlow's converter keeps about
20 MB per ``convert()`` call (tensorflow/tensorflow#122598), so a long-lived
process would grow with every artefact.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kerasflow import tasks
from kerasflow.errors import ServingError
from kerasflow.serving import portable, verify
from kerasflow.serving.artefact_runtime import contract_path

log = logging.getLogger(__name__)

VERIFICATION_FILE = "verification.json"


def parse_format(text: str) -> tuple[str, str]:
    """``"litert:int8"`` -> ``("litert", "int8")``; ``"onnx"`` -> ``("onnx", "none")``, checked."""
    fmt, _, quantize = str(text).strip().partition(":")
    quantize = quantize or "none"
    portable.check_format(fmt, quantize)
    return fmt, quantize


@dataclass
class ExportReport:
    """What :func:`export_formats` wrote and measured."""

    saved_model: object | None = None
    artefacts: list = field(default_factory=list)
    verification: list[dict] = field(default_factory=list)


def export_formats(
    model,
    out: str | os.PathLike,
    cfg,
    contract: dict,
    formats: list[str],
    *,
    portable_dir: str | os.PathLike | None = None,
    version: int | None = None,
    data=None,
    verify_split: str | None = "test",
    max_metric_drop: float | None = None,
    tracker=None,
    registered: tuple[str, str] | None = None,
    isolate: bool | None = None,
) -> ExportReport:
    """Write ``formats`` of ``model`` and verify the portable ones.

    Args:
        model: the Keras model.
        out: the SavedModel base folder (TF Serving layout).
        cfg: its run config (data section, seed).
        contract: the model's contract.
        formats: ``FORMAT[:QUANTIZE]`` strings.
        portable_dir: where LiteRT/ONNX artefacts go (default ``out/portable``).
        version: the SavedModel version folder (default: the next free one).
        data: the run's prepared data (default: prepared from ``cfg`` when needed).
        verify_split: the split verification runs on; None skips verification.
        max_metric_drop: fail (exit 1) when an artefact's metric drops more.
        tracker: a :class:`~kerasflow.tracking.RunTracker` of the model's run (or None).
        registered: ``(name, version)`` of the registered model version to tag.
        isolate: convert in child processes (default: when more than one conversion).

    Raises:
        ServingError: a conversion failed; VerificationError: ``max_metric_drop`` exceeded.
    """
    from kerasflow.serving.export import export_saved_model

    specs = list(dict.fromkeys(parse_format(f) for f in formats))
    report = ExportReport()
    if ("saved_model", "none") in specs:
        report.saved_model = export_saved_model(model, out, cfg.data, contract, version)
    wanted = [s for s in specs if s[0] != "saved_model"]
    if not wanted:
        return report
    task = tasks.get(contract["task"])
    if data is None:
        data = task.training_data(task.prepare(cfg.data, cfg.experiment.seed), model)
    calibration = None
    if any(q == "int8" for _, q in wanted):
        calibration, _ = verify.split_pixels(
            data, "train", limit=portable.CALIBRATION_IMAGES, task=task
        )
    folder = Path(portable_dir) if portable_dir is not None else Path(out) / "portable"
    isolate = len(wanted) > 1 if isolate is None else isolate
    if isolate:
        report.artefacts = _convert_in_children(model, folder, cfg, contract, wanted, calibration)
    else:
        report.artefacts = [
            portable.export_portable(model, folder, cfg.data, contract, f, q, calibration)
            for f, q in wanted
        ]
    if verify_split is None:
        return report
    rows = verify.verify_artefacts(model, report.artefacts, data, contract, verify_split)
    report.verification = rows
    (folder / VERIFICATION_FILE).write_text(json.dumps(rows, indent=2))
    for art, row in zip(report.artefacts, rows[1:], strict=True):
        meta = json.loads(art.contract_path.read_text())
        meta["verification"] = {"split": verify_split, "keras": rows[0], "artefact": row}
        portable.write_contract(art.path, meta)  # beside it, and in a LiteRT file's metadata
    _log(rows, tracker, registered)
    verify.check_drop(rows, max_metric_drop)
    return report


def _log(rows: list[dict], tracker, registered) -> None:
    if tracker is None or not tracker.enabled:
        return
    tracker.log_table(rows, f"export/{VERIFICATION_FILE}")
    tags = verify.version_tags(rows)
    tracker.set_tags(tags)
    if registered is not None:
        from kerasflow.serving import mlflow_model as tracked

        tracked.tag_model_version(registered[0], registered[1], tags, tracker.uri)


def _convert_in_children(model, folder: Path, cfg, contract, wanted, calibration) -> list:
    """Each conversion in its own ``python -m kerasflow.serving.convert`` (see the module docstring)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="kerasflow-convert-") as tmp:
        job = Path(tmp)
        model.save(job / "model.keras")
        (job / "job.json").write_text(
            json.dumps({"contract": contract, "data": cfg.data.model_dump(mode="json")})
        )
        if calibration is not None:
            np.save(job / "calibration.npy", calibration)
        for fmt, quantize in wanted:
            cmd = [sys.executable, "-m", "kerasflow.serving.convert", str(job), str(folder)]
            done = subprocess.run(
                [*cmd, fmt, quantize], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                tail = (done.stderr or "").strip().splitlines()
                message = next((ln for ln in reversed(tail) if ln.startswith("Error:")), None)
                raise ServingError(
                    (
                        message or f"Converting to {fmt} ({quantize}) failed: {tail[-3:]}"
                    ).removeprefix("Error: ")
                )
            path = folder / f"{portable.artefact_name(quantize)}{portable.SUFFIX[fmt]}"
            written.append(portable.PortableArtefact(path, contract_path(path), fmt, quantize))
    return written


def export_after_run(cfg, model, contract, tracker, registered, work_dir) -> ExportReport | None:
    """The LiteRT/ONNX part of a run's ``export.formats`` (the SavedModel part is
    :func:`kerasflow.serving.export.export_after_training`).

    Artefacts go to ``<export.dir or work dir/export>/portable``; verification is
    logged to the run and the registered version, and ``export.max_metric_drop``
    fails the run (exit 1).
    """
    spec = cfg.export
    if spec is None or not spec.enabled:
        return None
    wanted = [f for f in spec.formats if parse_format(f)[0] != "saved_model"]
    if not wanted:
        return None
    base = Path(spec.dir) if spec.dir else Path(work_dir) / "export"
    version = (registered.name, registered.version) if registered is not None else None
    return export_formats(
        model,
        base,
        cfg,
        contract,
        wanted,
        max_metric_drop=cfg.export.max_metric_drop,
        tracker=tracker,
        registered=version,
    )


def export_model(
    model: str,
    out: str | os.PathLike,
    fmt: str = "litert",
    quantize: str = "none",
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
    max_metric_drop: float | None = None,
    verify_split: str | None = "test",
) -> ExportReport:
    """``kerasflow export MODEL --format litert|onnx``: one artefact in ``out``, verified.

    MODEL is a ``models:/`` or ``runs:/`` URI or a ``.keras`` file; the run's
    config gives the data for int8 calibration and verification. The table is
    logged to the model's MLflow run, and to its registered version as tags for
    a ``models:/`` URI.
    """
    fmt, quantize = parse_format(f"{fmt}:{quantize}")  # before TensorFlow loads: fail fast
    if fmt == "saved_model":
        raise ServingError(
            "export_model writes litert or onnx; use kerasflow.export for a SavedModel."
        )
    from kerasflow.serving.export import contract_for, load_for_export
    from kerasflow.tracking import RunTracker, resolve_tracking_uri
    from kerasflow.tracking import model_registry as registry

    keras_model, cfg = load_for_export(str(model), config, overrides, uri)
    store = uri or cfg.tracking.uri
    run_id = registry.run_id_of(str(model), store)
    tracker = RunTracker(resolve_tracking_uri(store), run_id) if run_id else None
    return export_formats(
        keras_model,
        out,
        cfg,
        contract_for(cfg, keras_model),
        [f"{fmt}:{quantize}"],
        portable_dir=out,
        verify_split=verify_split,
        max_metric_drop=max_metric_drop,
        tracker=tracker,
        registered=registry.registered_version_of(str(model), store),
    )
