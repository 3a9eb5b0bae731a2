"""Running a LiteRT or ONNX artefact with its own runtime, without TensorFlow.

An artefact is a model file (``.tflite`` or ``.onnx``) with its contract
beside it (``<file>.json``, e.g. ``model_int8.tflite.json``: task, class names, input size and
channels, the data section, input and output names; see
:mod:`kerasflow.serving.portable`). A LiteRT file also carries the same JSON in its
flatbuffer metadata (entry ``kerasflow_contract``): without the JSON beside it, that
copy is used; when both exist they must be equal (:func:`read_artefact_contract`).
:func:`load_artefact` reads both and
returns an :class:`Artefact` whose :meth:`Artefact.run` takes uint8 pixels at
the model's input size and returns the named outputs as NumPy arrays.

LiteRT runs in ``ai_edge_litert.interpreter.Interpreter`` (``pip install
kerasflow[litert]``), ONNX in ``onnxruntime.InferenceSession`` (``pip
install kerasflow[onnx]``). Neither path imports TensorFlow.

Example:
    >>> artefact = load_artefact("export/digits/model_int8.tflite")
    >>> artefact.run(pixels)["probabilities"].shape
    (4, 10)
"""

from __future__ import annotations

import json
import os
import struct
import threading
from pathlib import Path

import numpy as np

from kerasflow.errors import ServingError

CONTRACT_SUFFIX = ".json"
CONTRACT_METADATA = "kerasflow_contract"  # the LiteRT metadata entry holding the contract
EXTENSIONS = {".tflite": "litert", ".onnx": "onnx"}
EXTRAS = {"litert": ("ai_edge_litert", "litert"), "onnx": ("onnxruntime", "onnx")}


def contract_path(model_file: str | os.PathLike) -> Path:
    """The contract file beside a model file: ``model.tflite`` -> ``model.tflite.json``."""
    path = Path(model_file)
    return path.with_name(path.name + CONTRACT_SUFFIX)


def is_artefact(path: str | os.PathLike) -> bool:
    """Whether MODEL names a LiteRT/ONNX artefact: a ``.tflite``/``.onnx`` path, or a folder
    of them that is no SavedModel or MLflow model (:func:`find_model_file` then says what
    is missing, e.g. the contract)."""
    path = Path(path)
    if path.suffix in EXTENSIONS:
        return True
    if not path.is_dir() or (path / "saved_model.pb").exists() or (path / "MLmodel").exists():
        return False
    return any(p.suffix in EXTENSIONS for p in path.iterdir())


def find_model_file(path: str | os.PathLike) -> Path:
    """The model file of an artefact path (the file itself, or the one artefact in a folder).

    Raises:
        ServingError: not an artefact, several in the folder, or no contract beside it.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in EXTENSIONS and p.is_file())
        if len(found) != 1:
            raise ServingError(
                f"{path} holds {len(found)} LiteRT/ONNX artefacts ({[p.name for p in found][:5]}); "
                "pass the .tflite or .onnx file itself."
            )
        path = found[0]
    if path.suffix not in EXTENSIONS or not path.is_file():
        raise ServingError(
            f"{path} is not a LiteRT (.tflite) or ONNX (.onnx) file. "
            "Write one with `kerasflow export MODEL --format litert|onnx`."
        )
    if not contract_path(path).is_file() and embedded_contract(path) is None:
        inside = " nor in its LiteRT metadata" if path.suffix == ".tflite" else ""
        raise ServingError(
            f"{path} has no contract beside it ({contract_path(path).name} is missing){inside}: "
            "kerasflow needs its class names and input size. Export it with `kerasflow export`."
        )
    return path


def embedded_contract(model_file: str | os.PathLike) -> dict | None:
    """The contract in a LiteRT file's ``kerasflow_contract`` metadata (None: no such entry,
    or not a ``.tflite`` file). Read with ``ai_edge_litert``'s flatbuffer schema: no TensorFlow.

    Raises:
        ServingError: the file is not a LiteRT flatbuffer, or the entry is not JSON.
    """
    path = Path(model_file)
    if path.suffix != ".tflite":
        return None
    schema = require("ai_edge_litert.schema_py_generated", "litert")
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ServingError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        if not schema.Model.ModelBufferHasIdentifier(buf, 0):
            raise ValueError("no TFL3 file identifier")
        model = schema.Model.GetRootAs(buf, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") != CONTRACT_METADATA:
                continue
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            text = bytes(data).decode("utf-8") if not isinstance(data, int) else ""
            return json.loads(text)
    except (ValueError, IndexError, TypeError, struct.error) as exc:
        raise ServingError(
            f"{path} is not a LiteRT model with a readable {CONTRACT_METADATA!r} metadata entry "
            f"({exc}). Export it again with `kerasflow export --format litert`."
        ) from None
    return None


def read_artefact_contract(model_file: str | os.PathLike) -> dict:
    """The contract of an artefact, checked for what running it needs.

    The JSON beside the file; for a LiteRT file without one, the copy embedded in its
    metadata. When both exist they must be the same.

    Raises:
        ServingError: no contract, an unreadable one, one lacking a key, or a JSON beside
            a LiteRT file that differs from the contract embedded in it (names both).
    """
    path = contract_path(model_file)
    embedded = embedded_contract(model_file)
    if not path.is_file() and embedded is not None:
        contract, source = embedded, f"the {CONTRACT_METADATA!r} metadata of {model_file}"
    else:
        try:
            contract = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ServingError(f"{path} is not a readable JSON contract ({exc}).") from None
        source = str(path)
        if embedded is not None and _canonical(contract) != _canonical(embedded):
            keys = ["(the whole contract)"]
            if isinstance(contract, dict) and isinstance(embedded, dict):
                keys = [
                    k
                    for k in sorted({*contract, *embedded})
                    if _canonical(contract.get(k)) != _canonical(embedded.get(k))
                ]
            raise ServingError(
                f"{path} and the contract embedded in {model_file} (metadata "
                f"{CONTRACT_METADATA!r}) differ in {keys[:8]}: one of them was edited. "
                f"Delete {path.name} to use the embedded contract, or export the model again."
            )
    missing = [
        k
        for k in ("task", "class_names", "image_size", "channels", "format", "data", "input")
        if not isinstance(contract, dict) or k not in contract
    ]
    if missing:
        raise ServingError(f"{source} lacks {missing}. Export the model again.")
    return contract


def _canonical(value) -> str:
    """A JSON value as comparable text (NaN equals NaN, key order does not count)."""
    return json.dumps(value, sort_keys=True)


def require(module: str, fmt: str):
    """Import a runtime module, or fail naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = EXTRAS[fmt]
        raise ServingError(
            f"Running a {fmt} artefact needs {package}: pip install 'kerasflow[{extra}]'."
        ) from None


class Artefact:
    """A loaded LiteRT/ONNX artefact: ``run(uint8 pixels) -> {output name: array}``.

    Attributes:
        path: the model file.
        contract: its contract JSON.
        format: ``litert`` or ``onnx``.
        input_shape: ``(height, width, channels)``.
    """

    def __init__(self, path: Path, contract: dict, threads: int | None = None):
        self.path = Path(path)
        self.contract = contract
        self.format = EXTENSIONS[self.path.suffix]
        self.input_shape = (*(int(v) for v in contract["image_size"]), int(contract["channels"]))
        self._lock = threading.Lock()  # an interpreter runs one call at a time
        if self.format == "litert":
            self._open_litert(threads)
        else:
            self._open_onnx(threads)

    @property
    def task(self) -> str:
        return str(self.contract["task"])

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def _open_litert(self, threads):
        interpreter = require("ai_edge_litert.interpreter", "litert")
        try:
            self._interpreter = interpreter.Interpreter(
                model_path=str(self.path), num_threads=threads
            )
        except (ValueError, RuntimeError) as exc:
            raise ServingError(f"LiteRT cannot load {self.path}: {exc}") from None
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        signatures = self._interpreter.get_signature_list()
        if "serving_default" not in signatures:
            raise ServingError(f"{self.path} has no serving_default signature. Export it again.")
        self._signature = self._interpreter.get_signature_runner("serving_default")
        self._output_names = [
            _output_name(k, self.contract.get("outputs") or [])
            for k in signatures["serving_default"]["outputs"]
        ]

    def _open_onnx(self, threads):
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ServingError(f"onnxruntime cannot load {self.path}: {exc}") from None
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [o.name for o in self._session.get_outputs()]

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    def run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for a batch of uint8 pixels ``N x height x width x channels``.

        Raises:
            ServingError: the pixels do not have the model's input shape.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.input_shape:
            raise ServingError(
                f"{self.path.name} takes uint8 pixels N x {' x '.join(map(str, self.input_shape))}. "
                f"Received shape {pixels.shape}."
            )
        pixels = pixels.astype(np.uint8, copy=False)
        with self._lock:
            if self.format == "onnx":
                values = self._session.run(None, {self._input_name: pixels})
                return dict(zip(self._output_names, values, strict=True))
            return self._run_litert(pixels)

    def _run_litert(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        feed = self._quantized(pixels)
        # One signature call per batch size: the runner resizes its input when it changes.
        outputs = self._signature(**{self.contract["input"]["name"]: feed})
        # A frozen signature names its outputs output_0, output_1, ... (the contract's order).
        names = self.contract.get("outputs") or []
        return {_output_name(k, names): np.array(v) for k, v in outputs.items()}

    def _quantized(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels in the input tensor's type (an int8 model's input may carry a scale)."""
        dtype = self._input["dtype"]
        scale, zero = self._input["quantization"]
        if dtype == np.uint8 and (scale in (0.0, 1.0)) and zero == 0:
            return pixels
        if dtype in (np.uint8, np.int8) and scale:
            info = np.iinfo(dtype)
            q = np.round(pixels.astype(np.float32) / scale + zero)
            return np.clip(q, info.min, info.max).astype(dtype)
        return pixels.astype(dtype)


def _output_name(key: str, names: list[str]) -> str:
    if key.startswith("output_") and key[7:].isdigit() and int(key[7:]) < len(names):
        return names[int(key[7:])]
    return key


def load_artefact(path: str | os.PathLike, threads: int | None = None) -> Artefact:
    """The artefact at ``path`` (a model file, or a folder with one), ready to run."""
    model_file = find_model_file(path)
    return Artefact(model_file, read_artefact_contract(model_file), threads)
