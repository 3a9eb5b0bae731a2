"""LiteRT (TFLite) and ONNX artefacts of a trained model, with their contract beside them.

:func:`export_portable` writes ``OUT/model[_QUANTIZE].tflite`` or ``.onnx`` and
``OUT/model[_QUANTIZE].tflite.json`` (``.onnx.json``). The artefact takes uint8 pixels
``N x height x width x channels`` (the model's input size: the deterministic
preprocessing, decoding and resizing, happens before the runtime, see
:mod:`kerasflow.serving.pixels`); ``data.normalize`` is inside the model. Its
outputs are the task's :meth:`~kerasflow.tasks.base.Task.portable_outputs`
(``probabilities`` and ``class_id`` for classification, ``class_map`` for
segmentation, ``predicted`` for multi-label, the heatmap peaks ``boxes``,
``scores``, ``classes`` for detection, whose NMS runs after the runtime).

Conversion uses builtin ops only: Keras' own ``export(format="litert")`` lets
Flex (TF Select) ops through, which ``ai_edge_litert`` cannot run; here a
model that needs one fails with :class:`~kerasflow.errors.ServingError`
naming the ops. Image decoding (``DecodeImage``) is never a builtin, which is
why the artefacts take pixels.

A LiteRT artefact also carries its contract inside: the flatbuffer's metadata
entry ``kerasflow_contract`` holds the same JSON (UTF-8), so a lone ``.tflite``
copied elsewhere still predicts with its class names
(:func:`kerasflow.serving.artefact_runtime.read_artefact_contract`).
:func:`write_contract` writes both, and again after verification adds its figures.

Quantisation (``quantize``): ``none`` (float32), ``float16`` (LiteRT only:
float16 weights), ``dynamic`` (int8 weights, float activations), ``int8``
(weights and activations, calibrated on ``calibration`` pixels, e.g. a few
hundred training images without augmentation; the LiteRT model then takes
uint8 pixels directly, the ONNX one quantises after its first cast; ONNX
uses per-tensor weights, which kept digits' accuracy where per-channel lost
3 points).

Example:
    >>> written = export_portable(model, "export/digits", cfg.data, contract, "litert", "int8",
    ...                           calibration=pixels)
    >>> written.path.name
    'model_int8.tflite'
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasflow import tasks
from kerasflow.errors import ServingError
from kerasflow.serving.artefact_runtime import CONTRACT_METADATA, contract_path
from kerasflow.version import __version__

log = logging.getLogger(__name__)

FORMATS = ("saved_model", "litert", "onnx")
PORTABLE_FORMATS = ("litert", "onnx")
QUANTIZE = ("none", "float16", "dynamic", "int8")
SUFFIX = {"litert": ".tflite", "onnx": ".onnx"}
INPUT_NAME = "pixels"
TFLITE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16  # of each buffer's data in a re-packed flatbuffer (weights stay aligned)
ONNX_OPSET = 17
CALIBRATION_IMAGES = 300
_FLEX_OPS = re.compile(r"TF Select ops:\s*([^\n]+)")
_CUSTOM_OPS = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


@dataclass
class PortableArtefact:
    """A written LiteRT/ONNX artefact: the model file, its contract file and what it is."""

    path: Path
    contract_path: Path
    format: str
    quantize: str

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def check_format(fmt: str, quantize: str = "none") -> None:
    """Refuse an unknown format or quantisation, or one the format does not offer."""
    if fmt not in FORMATS:
        raise ServingError(f"Unknown export format {fmt!r}. Choose one of: {', '.join(FORMATS)}.")
    if quantize not in QUANTIZE:
        raise ServingError(
            f"Unknown quantisation {quantize!r}. Choose one of: {', '.join(QUANTIZE)}."
        )
    if fmt == "saved_model" and quantize != "none":
        raise ServingError(
            f"A SavedModel is not quantised (--quantize {quantize}); use --format litert or onnx."
        )
    if fmt == "onnx" and quantize == "float16":
        raise ServingError(
            "float16 quantisation is offered for LiteRT only. For ONNX use none, dynamic or int8."
        )


def artefact_name(quantize: str) -> str:
    """``model`` for float32, else ``model_<quantize>``."""
    return "model" if quantize == "none" else f"model_{quantize}"


def portable_function(model, contract: dict, dtype: str = "uint8"):
    """The concrete function converted: pixels ``[None, h, w, c]`` -> the task's outputs."""
    import tensorflow as tf

    task = tasks.get(contract["task"])
    outputs = task.portable_outputs(model, contract)
    shape = [None, *(int(v) for v in model.inputs[0].shape[1:])]
    spec = tf.TensorSpec(shape, getattr(tf, dtype), name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(pixels):
        return outputs(tf.cast(pixels, tf.float32))

    return serve


def output_names(model, contract: dict) -> list[str]:
    """The artefact's output names in their flattened order (a dict's keys, sorted)."""
    fn = portable_function(model, contract).get_concrete_function()
    return sorted(fn.structured_outputs)


def _flex_error(exc: Exception) -> ServingError:
    text = str(exc)
    ops = sorted(
        {op.strip() for found in _FLEX_OPS.findall(text) for op in found.split(",") if op.strip()}
        | set(_CUSTOM_OPS.findall(text))
    )
    if ops:
        return ServingError(
            f"The model needs TensorFlow op(s) {', '.join(ops)} that LiteRT has no builtin "
            "kernel for (they would need the Flex delegate, which LiteRT runtimes here cannot "
            "run). Replace the layer that uses them, or export a SavedModel."
        )
    lines = [ln for ln in text.splitlines() if "error" in ln.lower()][:3]
    return ServingError(f"LiteRT conversion failed: {' | '.join(lines) or text[:300]}")


def convert_litert(model, contract: dict, quantize: str = "none", calibration=None) -> bytes:
    """The LiteRT flatbuffer of ``model`` (builtin ops only)."""
    import tensorflow as tf

    int8 = quantize == "int8"
    fn = portable_function(model, contract, "float32" if int8 else "uint8")
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Frozen first: given the model, the converter may keep its weights as resource
    # variables (READ_VARIABLE ops, a file without its weights); without the model it
    # writes no signature. The frozen signature's outputs are output_0, output_1, ...
    # in the order of output_names(), which the contract records.
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if int8:
        images = _calibration(calibration)
        converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in images)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        converter.inference_input_type = tf.uint8
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and others
        raise _flex_error(exc) from None


def convert_onnx(model, contract: dict, out: Path, quantize: str = "none", calibration=None):
    """Write the ONNX model of ``model`` to ``out`` (quantised with onnxruntime when asked)."""
    try:
        import tf2onnx
    except ImportError:
        raise ServingError("ONNX export needs tf2onnx: pip install 'kerasflow[onnx]'.") from None
    fn = portable_function(model, contract)
    spec = list(fn.input_signature)
    target = out if quantize == "none" else out.with_suffix(".float32.onnx")
    try:
        tf2onnx.convert.from_function(
            fn, input_signature=spec, opset=ONNX_OPSET, output_path=str(target)
        )
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types
        raise ServingError(f"ONNX conversion failed: {str(exc)[:300]}") from None
    if quantize == "none":
        return
    try:
        from onnxruntime import quantization as q
    except ImportError:
        raise ServingError(
            "Quantising ONNX needs onnxruntime: pip install 'kerasflow[onnx]'."
        ) from None
    try:
        if quantize == "dynamic":
            q.quantize_dynamic(str(target), str(out), weight_type=q.QuantType.QInt8)
        else:
            q.quantize_static(
                str(target),
                str(out),
                _Reader(_calibration(calibration)),
                quant_format=q.QuantFormat.QDQ,
                per_channel=False,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
            )
    finally:
        target.unlink(missing_ok=True)


class _Reader:
    """onnxruntime's calibration data reader over uint8 pixels, one image at a time."""

    def __init__(self, images):
        self._items = iter(images)

    def get_next(self):
        image = next(self._items, None)
        return None if image is None else {INPUT_NAME: image[None].astype(np.uint8)}


def _calibration(images) -> np.ndarray:
    if images is None or len(images) == 0:
        raise ServingError(
            "int8 quantisation needs calibration images (the run's training pixels); "
            "none were given."
        )
    return np.asarray(images)[:CALIBRATION_IMAGES]


def embed_contract(flatbuffer: bytes, contract: dict) -> bytes:
    """``flatbuffer`` (a LiteRT model) with ``contract`` as its ``kerasflow_contract`` metadata.

    The JSON is UTF-8 in a buffer of its own; an entry of that name already there is
    replaced. Operators, tensors, weights and signatures are re-packed unchanged, each
    buffer's data aligned to 16 bytes. A model whose weights live outside the flatbuffer
    (over 2 GB) is returned unchanged (its contract stays beside it only).
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    buffers = list(model.buffers or [])
    if any(int(b.offset or 0) > 1 for b in buffers):
        log.warning(
            "the LiteRT model keeps its weights outside the flatbuffer: contract not embedded"
        )
        return flatbuffer
    payload = np.frombuffer(json.dumps(contract, indent=2).encode("utf-8"), np.uint8)
    metadata = list(model.metadata or [])
    entry = next((m for m in metadata if _text(m.name) == CONTRACT_METADATA), None)
    if entry is None:
        entry = schema.MetadataT(name=CONTRACT_METADATA, buffer=len(buffers))
        buffers.append(schema.BufferT())
        metadata.append(entry)
    buffers[entry.buffer].data = payload
    model.buffers = [_Aligned(b) for b in buffers]
    model.metadata = metadata
    builder = flatbuffers.Builder(len(flatbuffer) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Aligned:
    """A flatbuffer ``BufferT`` packed with its data aligned to BUFFER_ALIGNMENT bytes
    (the generated ``Pack`` aligns uint8 data to 1 byte, leaving float weights unaligned)."""

    def __init__(self, buffer):
        self.buffer = buffer

    def Pack(self, builder):  # noqa: N802 - the flatbuffers object API's name
        from tensorflow.lite.python import schema_py_generated as schema

        data = None
        if self.buffer.data is not None:
            raw = np.asarray(self.buffer.data, np.uint8).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        schema.BufferAddOffset(builder, int(self.buffer.offset or 0))
        schema.BufferAddSize(builder, int(self.buffer.size or 0))
        return schema.BufferEnd(builder)


def write_contract(artefact_path: str | os.PathLike, contract: dict) -> Path:
    """Write an artefact's contract beside it (``<file>.json``) and, for LiteRT, into the
    flatbuffer's ``kerasflow_contract`` metadata (the file replaced atomically). Returns
    the JSON's path."""
    path = Path(artefact_path)
    if path.suffix == SUFFIX["litert"]:
        staged = path.with_name(f".{path.name}.tmp")
        try:
            staged.write_bytes(embed_contract(path.read_bytes(), contract))
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
    meta_path = contract_path(path)
    meta_path.write_text(json.dumps(contract, indent=2))
    return meta_path


def artefact_contract(data_config, contract: dict, fmt: str, quantize: str, file: str) -> dict:
    """The JSON shipped beside an artefact: what a runtime needs to feed it and read it."""
    task = tasks.get(contract["task"])
    height, width = (int(v) for v in data_config.image_size)
    channels = int(data_config.channels)
    return {
        **{k: v for k, v in contract.items() if k not in ("task", "class_names")},
        "task": task.name,
        "class_names": [str(c) for c in contract["class_names"]],
        "format": fmt,
        "quantize": quantize,
        "file": file,
        "image_size": [height, width],
        "channels": channels,
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "shape": [None, height, width, channels],
            "preprocessing": "decode, channel policy, data.center_crop and data.resize to "
            "image_size, done before the runtime (kerasflow.serving.pixels)",
        },
        "normalisation": {
            "normalize": data_config.normalize,
            "applied": "inside the model (its first layer); feed 0..255 pixels",
        },
        **task.serving_metadata(contract),
        "data": data_config.model_dump(mode="json"),
        "kerasflow_version": __version__,
    }


def export_portable(
    model,
    out: str | os.PathLike,
    data_config,
    contract: dict,
    fmt: str,
    quantize: str = "none",
    calibration=None,
) -> PortableArtefact:
    """Write a LiteRT or ONNX artefact of ``model`` and its contract into ``out``.

    Args:
        model: the trained Keras model (input: 0..255 float pixels).
        out: the folder; the files are ``model[_QUANTIZE]{.tflite,.onnx}`` and
            ``<model file>.json``.
        data_config: the run's data section (input size, channels, resize, normalize).
        contract: the model's contract (task, class names and the task's extras).
        fmt: ``litert`` or ``onnx``.
        quantize: ``none``, ``float16`` (LiteRT), ``dynamic`` or ``int8``.
        calibration: uint8 pixels ``N x h x w x c`` for ``int8``.

    Raises:
        ServingError: an unknown format, a task without portable outputs, or a
            model the format cannot hold (ops named).
    """
    check_format(fmt, quantize)
    if fmt not in PORTABLE_FORMATS:
        raise ServingError(f"export_portable writes litert or onnx, not {fmt!r}.")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    name = artefact_name(quantize)
    path = folder / f"{name}{SUFFIX[fmt]}"
    # Written beside the target and renamed: a failed conversion leaves nothing half-written.
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        staged = Path(tmp) / path.name
        if fmt == "litert":
            staged.write_bytes(convert_litert(model, contract, quantize, calibration))
        else:
            convert_onnx(model, contract, staged, quantize, calibration)
        meta = artefact_contract(data_config, contract, fmt, quantize, path.name)
        meta["outputs"] = output_names(model, contract)
        if fmt == "litert":
            staged.write_bytes(embed_contract(staged.read_bytes(), meta))
        os.replace(staged, path)
    meta_path = contract_path(path)
    meta_path.write_text(json.dumps(meta, indent=2))
    log.info("exported %s %s (%s) to %s", contract["task"], fmt, quantize, path)
    return PortableArtefact(path, meta_path, fmt, quantize)
