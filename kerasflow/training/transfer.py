"""``model.pretrained``: resolve the source, copy its weights into a new model, log what happened.

The copying itself is :mod:`kerasflow.models.pretrained`; this module adds
what needs the tracking layer: an MLflow model URI is downloaded (its files
only; nothing in the folder is imported or run), its ``.keras`` file is read
with ``safe_mode=True``, and its stored contract says which classes and task
the source had, so that a head trained for other classes starts new.
"""

from __future__ import annotations

import logging
import tempfile
import weakref

from kerasflow.models import pretrained as weights_lib
from kerasflow.models.pretrained import SourceWeights, TransferReport

log = logging.getLogger(__name__)

REPORT_FILE = "pretrained_layers.json"

# Models built by build_compiled_model -> their transfer report (read when the run logs).
_REPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# (pretrained, tracking uri) -> weights: tuner trials and repeated builds read them once.
_SOURCES: dict[tuple[str, str | None], SourceWeights] = {}


def is_model_uri(value: str) -> bool:
    return value.startswith(("models:/", "runs:/"))


def read_source(cfg, input_shape) -> SourceWeights:
    """The weights ``cfg.model.pretrained`` names (cached per process)."""
    spec = cfg.model.pretrained
    key = (spec, cfg.tracking.uri)
    if spec == weights_lib.IMAGENET:
        key = (f"{spec}:{cfg.model.params}:{tuple(input_shape)}", None)
    if key in _SOURCES:
        return _SOURCES[key]
    if spec == weights_lib.IMAGENET:
        source = weights_lib.imagenet_weights(cfg.model.name, cfg.model.params, input_shape)
    elif is_model_uri(spec):
        source = _from_store(spec, cfg.tracking.uri)
    else:
        source = weights_lib.read_weights(spec)
    _SOURCES[key] = source
    return source


def _from_store(model_uri: str, uri: str | None) -> SourceWeights:
    from kerasflow.tracking import model_registry

    contract = model_registry.load_contract(model_uri, uri) or {}
    with tempfile.TemporaryDirectory(prefix="kerasflow-pretrained-") as tmp:
        path = model_registry.download_keras_file(model_uri, tmp, uri)
        source = weights_lib.read_weights(
            path, class_names=contract.get("class_names"), task=contract.get("task")
        )
    source.origin = model_uri
    return source


def apply_pretrained(model, cfg, prepared) -> TransferReport | None:
    """Copy ``cfg.model.pretrained`` into ``model`` (None when the config has none)."""
    if not cfg.model.pretrained:
        return None
    source = read_source(cfg, prepared.input_shape)
    report = weights_lib.copy_weights(
        model, source, class_names=prepared.class_names, task=cfg.experiment.task
    )
    _REPORTS[model] = report
    return report


def report_of(model) -> TransferReport | None:
    """The transfer report of a model built with ``model.pretrained`` (None otherwise)."""
    try:
        return _REPORTS.get(model)
    except TypeError:
        return None


def log_transfer(model, tracker) -> None:
    """Log which layers were loaded, new and skipped: params and ``pretrained_layers.json``."""
    report = report_of(model)
    if report is None:
        return
    tracker.log_params(report.as_params())
    tracker.log_dict(report.as_dict(), REPORT_FILE)
