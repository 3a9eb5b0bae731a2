"""``kerasflow predict``: one prediction per image file, whatever the model's format.

MODEL is a LiteRT (``.tflite``) or ONNX (``.onnx``) artefact with its
contract beside it, or anything ``kerasflow serve`` takes (a SavedModel
export, ``models:/``, ``runs:/``, a ``.keras`` file). Each image goes through
the same checks and preprocessing as a served request
(:class:`~kerasflow.serving.predictor.Predictor`), and the answer is the
task's JSON (:mod:`kerasflow.tasks.predictions`) with the file's ``path``
first, in input order. An artefact runs without importing TensorFlow.

Example:
    >>> predict_paths("export/digits/model_int8.tflite", ["7.png"])[0]["class_name"]
    '7'
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kerasflow.errors import DataError, ServingError
from kerasflow.serving.artefact_runtime import is_artefact
from kerasflow.serving.predictor import Limits, RequestError


def load_predictor(
    model: str,
    workdir: Path,
    config=None,
    overrides=None,
    uri=None,
    trust_saved_model: bool = False,
    saved_model_digest: str | None = None,
):
    """The :class:`Predictor` of MODEL (an artefact, or a SavedModel through ``serve``'s checks)."""
    if is_artefact(model):
        from kerasflow.serving.artefact_predictor import ArtefactPredictor

        return ArtefactPredictor.from_path(model, Limits())
    from kerasflow.serving.predictor import Predictor
    from kerasflow.serving.server import resolve_saved_model

    source = resolve_saved_model(
        model, workdir, config, overrides, uri, trust_saved_model, saved_model_digest
    )
    return Predictor.from_export(source.saved_model_dir, Limits())


def predict_paths(
    model: str,
    paths: list[str | os.PathLike],
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
    trust_saved_model: bool = False,
    saved_model_digest: str | None = None,
) -> list[dict]:
    """One JSON-ready dict per image file, in order, each starting with its ``path``.

    A SavedModel goes through ``kerasflow serve``'s checks: its content digest must
    be recorded by the tracking store or be ``saved_model_digest``, unless
    ``trust_saved_model`` (see :mod:`kerasflow.serving.trust`).

    Raises:
        DataError: a file is missing, unreadable or not a decodable image (named).
        ServingError: MODEL cannot be loaded.
    """
    workdir = Path(tempfile.mkdtemp(prefix="kerasflow-predict-"))
    try:
        predictor = load_predictor(
            str(model), workdir, config, overrides, uri, trust_saved_model, saved_model_digest
        )
        results = []
        for path in paths:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise DataError(f"Cannot read image {path}: {exc.strerror or exc}.") from None
            try:
                (answer,) = predictor.predict_files([data])
            except RequestError as exc:
                message = exc.message.replace("b64[0]", "the file")
                raise DataError(f"{path}: {message}") from None
            results.append({"path": str(path), **answer})
        return results
    except RequestError as exc:  # pragma: no cover - every request error is per file above
        raise ServingError(exc.message) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summary(result: dict) -> str:
    """A one-line reading of one prediction (what ``kerasflow predict`` prints without --json)."""
    if "class_name" in result:
        p = max(result.get("probabilities") or [0.0])
        return f"{result['class_name']} ({p:.3f})"
    if "labels" in result:
        return ", ".join(result["labels"]) or "(no label over its threshold)"
    if "class_map" in result:
        rows = result["class_map"]
        present = sorted({v for row in rows for v in row})
        return f"class map {len(rows)}x{len(rows[0]) if rows else 0}, classes {present}"
    if "boxes" in result:
        return f"{len(result['boxes'])} boxes: {', '.join(result.get('class_names', []))}"
    return str(result)
