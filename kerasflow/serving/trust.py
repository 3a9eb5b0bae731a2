"""What ``kerasflow serve`` accepts from a model folder, checked before anything of it runs.

Two checks, both on bytes read as data:

* :func:`check_serving_folder`: an MLflow model folder is accepted only when
  it is exactly what kerasflow writes (:mod:`kerasflow.serving.mlflow_model`):
  one ``python_function`` flavor whose loader is MLflow's model-from-code
  loader with kerasflow's own ``pyfunc_code.py`` (byte for byte), no
  ``code:`` paths, no pickled ``python_model``, one ``saved_model`` artifact,
  a ``config`` of known keys, and no other files that Python could import.
  kerasflow never imports anything from the folder even then: the server
  builds its model from the SavedModel and its contract
  (:class:`kerasflow.serving.predictor.Predictor`).
* :func:`check_saved_model_graph`: a SavedModel graph is code. Graphs that
  hold file-system or process ops (:data:`FORBIDDEN_OPS`) are refused, and
  the checkpoint ops TensorFlow's own saver uses are refused where a
  signature could reach them.

Example:
    >>> saved_model_dir, config = check_serving_folder("mlruns/.../serving_model")
    >>> check_saved_model_graph(saved_model_dir)
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from kerasflow.errors import ServingError

log = logging.getLogger(__name__)

SAVED_MODEL_ARTIFACT = "saved_model"
CODE_FILE = "pyfunc_code.py"
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
# Files MLflow writes beside MLmodel for a pyfunc model from code (none is imported).
ALLOWED_FILES = frozenset(
    [
        "MLmodel",
        CODE_FILE,
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "registered_model_meta",
        "input_example.json",
        "serving_input_example.json",
    ]
)
ALLOWED_PYFUNC_KEYS = frozenset(
    [
        "artifacts",
        "cloudpickle_version",
        "code",
        "config",
        "env",
        "loader_module",
        "model_code_path",
        "python_version",
        "streamable",
    ]
)
ALLOWED_CONFIG_KEYS = frozenset(["max_payload_mb"])
# Ops that touch files or run Python: never in a served graph, whatever the flags.
FORBIDDEN_OPS = frozenset(
    [
        "WriteFile",
        "ReadFile",
        "MatchingFiles",
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "ImmutableConst",
        "WholeFileReader",
        "WholeFileReaderV2",
        "TextLineReader",
        "TextLineReaderV2",
        "FixedLengthRecordReader",
        "FixedLengthRecordReaderV2",
        "TFRecordReader",
        "TFRecordReaderV2",
        "LMDBReader",
        "TFRecordDataset",
        "TFRecordDatasetV2",
        "TextLineDataset",
        "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2",
        "LMDBDataset",
        "ExperimentalLMDBDataset",
        "CSVDataset",
        "CSVDatasetV2",
        "ExperimentalCSVDataset",
        "SqlDataset",
        "ExperimentalSqlDataset",
        "SaveDataset",
        "SaveDatasetV2",
        "LoadDataset",
        "ExperimentalSaveDataset",
        "SnapshotDataset",
        "SnapshotDatasetV2",
        "CacheDataset",
        "CacheDatasetV2",
        "Save",
        "SaveSlices",
        "Restore",
        "RestoreSlice",
        "PrintV2",
        "CreateSummaryFileWriter",
        "CreateSummaryDbWriter",
        "WriteSummary",
        "WriteRawProtoSummary",
        "WriteScalarSummary",
        "WriteImageSummary",
        "WriteAudioSummary",
        "WriteHistogramSummary",
        "WriteGraphSummary",
        "ImportEvent",
        "DebugIdentity",
        "DebugIdentityV2",
        "DebugIdentityV3",
        "DebugNanCount",
        "DebugNumericSummary",
        "DebugNumericSummaryV2",
        "LoadAndRemapMatrix",
        "GenerateVocabRemapping",
        "InitializeTableFromTextFile",
        "InitializeTableFromTextFileV2",
    ]
)
# TensorFlow's own saver writes and reads checkpoints with these; only its
# save/restore functions may hold them, and no signature may reach those.
CHECKPOINT_OPS = frozenset(["SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename"])
_SAVER_FUNCTION = re.compile(r"__inference__traced_(save|restore)_\d+")


def _refuse(path, why: str) -> ServingError:
    return ServingError(
        f"{path} is not a kerasflow serving model, so nothing of it is loaded: {why}. "
        "Serve the SavedModel export or .keras file that kerasflow wrote instead."
    )


def check_serving_folder(path: str | os.PathLike) -> tuple[Path, dict]:
    """Accept an MLflow model folder only when it is exactly what kerasflow writes.

    Reads ``MLmodel`` with ``yaml.safe_load`` and lists the folder; imports and
    runs nothing.

    Returns:
        The SavedModel folder inside it and the saved ``config`` (e.g. ``max_payload_mb``).

    Raises:
        ServingError: anything else, naming what is not allowed.
    """
    import yaml

    path = Path(path)
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise ServingError(f"{path} has no MLmodel file; it is not an MLflow model.")
    try:
        spec = yaml.safe_load(mlmodel.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _refuse(path, f"its MLmodel is not valid YAML ({exc})") from None
    flavors = spec.get("flavors") if isinstance(spec, dict) else None
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        names = sorted(flavors) if isinstance(flavors, dict) else flavors
        raise _refuse(path, f"its flavors are {names}, not exactly ['python_function']")
    flavor = flavors["python_function"]
    if not isinstance(flavor, dict):
        raise _refuse(path, "its python_function flavor is not a mapping")
    extra = sorted(set(flavor) - ALLOWED_PYFUNC_KEYS)
    if extra:
        raise _refuse(path, f"its python_function flavor has keys kerasflow never writes: {extra}")
    if flavor.get("loader_module") != CODE_LOADER:
        raise _refuse(
            path, f"loader_module is {flavor.get('loader_module')!r}, not {CODE_LOADER!r}"
        )
    if flavor.get("code") is not None:
        raise _refuse(path, f"it names code paths ({flavor['code']!r}) that MLflow would import")
    code = flavor.get("model_code_path")
    if not isinstance(code, str) or Path(code).name != CODE_FILE:
        raise _refuse(path, f"model_code_path is {code!r}, not kerasflow's {CODE_FILE}")
    ours = Path(__file__).with_name(CODE_FILE).read_bytes()  # read, not imported: no cycle
    if not (path / CODE_FILE).is_file() or (path / CODE_FILE).read_bytes() != ours:
        raise _refuse(path, f"its {CODE_FILE} is missing or differs from kerasflow's")
    config = flavor.get("config") or {}
    if not isinstance(config, dict) or set(config) - ALLOWED_CONFIG_KEYS:
        raise _refuse(
            path, f"its config {config!r} has keys other than {sorted(ALLOWED_CONFIG_KEYS)}"
        )
    if "max_payload_mb" in config and not (
        isinstance(config["max_payload_mb"], int | float) and config["max_payload_mb"] > 0
    ):
        raise _refuse(path, f"its max_payload_mb {config['max_payload_mb']!r} is not positive")
    saved_model = _saved_model_artifact(path, flavor.get("artifacts"))
    _check_files(path, saved_model)
    return saved_model, dict(config)


def _saved_model_artifact(path: Path, artifacts) -> Path:
    if not isinstance(artifacts, dict) or set(artifacts) != {SAVED_MODEL_ARTIFACT}:
        names = sorted(artifacts) if isinstance(artifacts, dict) else artifacts
        raise _refuse(path, f"its artifacts are {names}, not exactly [{SAVED_MODEL_ARTIFACT!r}]")
    entry = artifacts[SAVED_MODEL_ARTIFACT]
    rel = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise _refuse(path, f"its saved_model artifact path {rel!r} is not inside the folder")
    parts = Path(rel).parts
    if len(parts) != 2 or parts[0] != "artifacts":
        raise _refuse(path, f"its saved_model artifact path {rel!r} is not artifacts/<name>")
    saved_model = path / rel
    if saved_model.is_symlink() or not (saved_model / "saved_model.pb").is_file():
        raise _refuse(path, f"{saved_model} holds no saved_model.pb")
    return saved_model


def _check_files(path: Path, saved_model: Path) -> None:
    """No file or folder beside what MLflow writes; nothing importable; no links out."""
    for entry in path.iterdir():
        if entry.name == "artifacts" and entry.is_dir() and not entry.is_symlink():
            others = [p.name for p in entry.iterdir() if p != saved_model]
            if others:
                raise _refuse(path, f"artifacts/ holds more than the SavedModel: {sorted(others)}")
            continue
        if entry.name not in ALLOWED_FILES or not entry.is_file() or entry.is_symlink():
            raise _refuse(path, f"it holds {entry.name!r}, which kerasflow never writes")
    for entry in saved_model.rglob("*"):
        if entry.is_symlink():
            raise _refuse(path, f"{entry} is a symbolic link")
        if entry.suffix in (".py", ".pyc", ".so", ".pth", ".pkl", ".pickle"):
            raise _refuse(path, f"{entry} is Python code or a pickle inside the SavedModel")


def graph_ops(saved_model_dir: str | os.PathLike) -> tuple[dict[str, set[str]], object]:
    """The op types of a SavedModel, read from ``saved_model.pb`` as data.

    Returns:
        ``{"<graph>": ops of the top-level graph, function name: its ops, ...}`` and the
        parsed ``SavedModel`` proto.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(saved_model_dir) / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise ServingError(f"{path} is not a readable SavedModel ({exc}).") from None
    ops: dict[str, set[str]] = {"<graph>": set()}
    for meta in proto.meta_graphs:
        ops["<graph>"].update(n.op for n in meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            ops.setdefault(fn.signature.name, set()).update(n.op for n in fn.node_def)
    return ops, proto


def _called(attr_values) -> set[str]:
    """Function names an op's attributes name (``f``, branches, bodies, lists of them)."""
    names = set()
    for value in attr_values:
        if value.HasField("func"):
            names.add(value.func.name)
        if value.HasField("list"):
            names.update(f.name for f in value.list.func)
    return names


def _reachable_from_signatures(proto) -> set[str]:
    """Every function a signature (or the init op) can call, through the graph and calls."""
    calls: dict[str, set[str]] = {}
    wanted: set[str] = set()
    for meta in proto.meta_graphs:
        nodes = {n.name: n for n in meta.graph_def.node}
        for fn in meta.graph_def.library.function:
            calls[fn.signature.name] = set().union(*(_called(n.attr.values()) for n in fn.node_def))
        todo = [
            t.name.split(":")[0]
            for sig in meta.signature_def.values()
            for t in (*sig.outputs.values(), *sig.inputs.values())
        ]
        seen: set[str] = set()
        while todo:
            name = todo.pop().lstrip("^").split(":")[0]
            if name in seen or name not in nodes:
                continue
            seen.add(name)
            wanted |= _called(nodes[name].attr.values())
            todo.extend(nodes[name].input)
    reached: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name not in reached:
            reached.add(name)
            wanted |= calls.get(name, set())
    return reached


def check_saved_model_graph(saved_model_dir: str | os.PathLike) -> None:
    """Refuse a SavedModel whose graph touches files or runs Python.

    Raises:
        ServingError: listing the forbidden ops and where they are.
    """
    ops, proto = graph_ops(saved_model_dir)
    found = {
        op: sorted(where for where, names in ops.items() if op in names)
        for op in sorted(set().union(*ops.values()) & FORBIDDEN_OPS)
    }
    reached = _reachable_from_signatures(proto)
    for where, names in ops.items():
        checkpoint = names & CHECKPOINT_OPS
        saver_only = _SAVER_FUNCTION.fullmatch(where) and where not in reached
        if checkpoint and not saver_only:
            for op in checkpoint:
                found.setdefault(op, []).append(where)
    if found:
        listed = "; ".join(
            f"{op} (in {', '.join(w[:60] for w in where[:3])})" for op, where in found.items()
        )
        raise ServingError(
            f"{saved_model_dir} is refused: its graph holds file-system or process ops that "
            f"kerasflow exports never contain: {listed}. A SavedModel graph is code; serve "
            "only models that kerasflow exported from a .keras file or a tracked run."
        )


TRUST_FLAG = "--trust-saved-model"
DIGEST_FLAG = "--saved-model-digest"
_GRAPH_IS_CODE = (
    "A SavedModel graph is code (TensorFlow's security guidance: loading an untrusted "
    "model is running an untrusted program)"
)


def check_digest(
    saved_model_dir: str | os.PathLike,
    actual: str,
    records: list[tuple[str, str]],
    trust: bool = False,
    searched: str = "",
) -> str | None:
    """Accept a SavedModel only when a trusted record holds its content digest.

    Args:
        saved_model_dir: the export folder (named in the messages).
        actual: its :func:`kerasflow.serving.digest.content_digest`.
        records: ``(where, digest)`` pairs from trusted sources: the tracking
            store's run and model-version tags, a digest the user passed.
        trust: ``--trust-saved-model``: serve it anyway, with a warning.
        searched: where a record was looked for, when ``records`` is empty.

    Returns:
        None when a record matches; the warning to show when ``trust`` lets an
        unknown or altered SavedModel through.

    Raises:
        ServingError: no record matches and ``trust`` is off; says why and names the flags.
    """
    from kerasflow.serving.digest import claimed_digest

    if any(digest == actual for _, digest in records):
        return None
    if records:
        listed = "; ".join(f"{where}: {digest}" for where, digest in records)
        why = f"its content digest {actual} differs from the recorded one ({listed})"
    else:
        why = f"no trusted record holds its content digest {actual}" + (
            f" ({searched})" if searched else ""
        )
    claimed = claimed_digest(saved_model_dir)
    if claimed is None:
        why += "; it carries no kerasflow digest, so kerasflow did not export it"
    elif claimed != actual:
        why += f"; its files changed after export (its kerasflow.json claims {claimed})"
    if trust:
        message = (
            f"{saved_model_dir} is loaded because of {TRUST_FLAG}, although {why}. "
            f"{_GRAPH_IS_CODE}: serve it only if you trust whoever wrote it. Graphs with "
            "file-system or process ops are still refused."
        )
        log.warning("%s", message)
        return message
    raise ServingError(
        f"{saved_model_dir} is refused: {why}. {_GRAPH_IS_CODE}, so kerasflow loads a "
        "SavedModel only when the tracking store records its digest (exports of tracked "
        f"runs, runs:/ and models:/) or you name it. If you trust its source, pass "
        f"{DIGEST_FLAG} with the digest `kerasflow export` printed, or {TRUST_FLAG}."
    )
