"""Running a LiteRT or ONNX artefact with its own runtime, without TensorFlow.

An artefact is a model file (``.tflite`` or ``.onnx``) with its contract
beside it (``<file>.json``, e.g. ``model_int8.tflite.json``: task, class names, input size and
channels, the data section, input and output names; see
:mod:`kerasflow.serving.portable`). :func:`load_artefact` reads both and
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
import threading
from pathlib import Path

import numpy as np

from kerasflow.errors import ServingError

CONTRACT_SUFFIX = ".json"
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
    if not contract_path(path).is_file():
        raise ServingError(
            f"{path} has no contract beside it ({contract_path(path).name} is missing): kerasflow "
            "needs its class names and input size. Export it with `kerasflow export`."
        )
    return path


def read_artefact_contract(model_file: str | os.PathLike) -> dict:
    """The contract JSON of an artefact, checked for what running it needs."""
    path = contract_path(model_file)
    try:
        contract = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServingError(f"{path} is not a readable JSON contract ({exc}).") from None
    missing = [
        k
        for k in ("task", "class_names", "image_size", "channels", "format", "data", "input")
        if not isinstance(contract, dict) or k not in contract
    ]
    if missing:
        raise ServingError(f"{path} lacks {missing}. Export the model again.")
    return contract


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
