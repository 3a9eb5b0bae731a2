"""Serving a detector: a SavedModel whose signatures return boxes, and a small HTTP server.

:func:`export_detection` writes ``out/<version>/`` in the TF Serving layout
with the same three signatures as :mod:`kerasflow.serving.signatures` and
the same ``assets/kerasflow.json`` (``task: detection``):

* ``serving_default``: ``image_bytes`` ``[None]`` encoded JPEG/PNG/BMP/GIF files
  of any sizes;
* ``predict_images``: ``images`` ``[None, None, None, None]`` uint8;
* ``predict_tensor``: ``inputs``, the model's own float input: letterboxed
  0..255 pixels (the detector applies ``data.normalize`` itself).

Each returns ``boxes`` ``[N, D, 4]`` float32 ``[ymin, xmin, ymax, xmax]`` in
pixels of each *input* image (the letterbox of ``data.resize: pad`` is undone
in the graph), ``scores`` ``[N, D]``, ``class_ids`` ``[N, D]`` int32 (``-1``
in unused rows), ``class_names`` ``[N, D]`` string (``""`` there) and
``num_detections`` ``[N]`` int32. Decoding, the letterbox and preprocessing
are the training pipeline's own functions.

:func:`make_server` serves an export over HTTP with the standard library:
``POST /invocations`` with an image body (``Content-Type: image/...``) or JSON
``{"b64": [...]}`` (or ``{"instances": [{"b64": ...}]}``) answers
``{"predictions": [{"boxes", "scores", "class_ids", "class_names"}]}``.

Example:
    >>> exported = export_detection(model, "export/shapes", cfg.data, names)
    >>> server = make_server(exported.path, port=8080)
    >>> server.serve_forever()
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import tempfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import tensorflow as tf

from kerasflow.errors import ServingError
from kerasflow.pipelines import box_ops
from kerasflow.pipelines.transforms import decode_image

log = logging.getLogger(__name__)

METADATA_FILE = "kerasflow.json"
CLASS_NAMES_FILE = "class_names.txt"
SIGNATURES = ("serving_default", "predict_images", "predict_tensor")


def detection_functions(model, data_config, class_names: list[str], **decode_kwargs):
    """The signature functions and input specs of a detector (see the module docstring).

    Args:
        model: the detector's trainable model (heads out) or its inference model.
        data_config: the run's :class:`~kerasflow.config.DataConfig`.
        class_names: one name per class.
        **decode_kwargs: :class:`~kerasflow.models.detector.CenterNetDecode` options.
    """
    from kerasflow.models.detector import inference_model
    from kerasflow.serving.signatures import _with_static_channels

    decoded = isinstance(model.outputs[0], dict) or len(model.outputs) > 1
    detect = model if decoded else inference_model(model, **decode_kwargs)
    height, width = (int(v) for v in data_config.image_size)
    channels = int(data_config.channels)
    mode = "pad" if data_config.resize == "pad" else "stretch"
    names = tf.constant([str(c) for c in class_names], tf.string)
    spec = (
        tf.TensorSpec([height, width, channels], tf.uint8),
        tf.TensorSpec([4], tf.float32),
        tf.TensorSpec([2], tf.float32),
    )

    def prepare(image):
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        resized, _, window = box_ops.letterbox(
            image,
            tf.zeros([0, 4]),
            (height, width),
            mode,
            interpolation=data_config.interpolation,
            antialias=data_config.antialias,
        )
        return resized, window, hw

    def outputs(x, windows, hws):
        out = detect(x, training=False)
        boxes = box_ops.unletterbox(out["boxes"], windows, hws)
        classes = tf.cast(out["classes"], tf.int32)
        valid = classes >= 0
        return {
            "boxes": tf.where(valid[..., None], boxes, 0.0),
            "scores": tf.where(valid, out["scores"], 0.0),
            "class_ids": classes,
            "class_names": tf.where(valid, tf.gather(names, tf.maximum(classes, 0)), ""),
            "num_detections": out["num_detections"],
        }

    def from_bytes(image_bytes):
        x, windows, hws = tf.map_fn(
            lambda data: prepare(decode_image(data, channels)),
            image_bytes,
            fn_output_signature=spec,
        )
        return outputs(x, windows, hws)

    def from_images(images):
        x, windows, hws = tf.map_fn(
            lambda image: prepare(_with_static_channels(image, channels)),
            images,
            fn_output_signature=spec,
        )
        return outputs(x, windows, hws)

    def from_tensor(inputs):
        n = tf.shape(inputs)[0]
        windows = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [n, 1])
        hws = tf.tile(tf.constant([[float(height), float(width)]]), [n, 1])
        return outputs(inputs, windows, hws)

    return {
        "serving_default": (from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")]),
        "predict_images": (
            from_images,
            [tf.TensorSpec([None, None, None, None], tf.uint8, name="images")],
        ),
        "predict_tensor": (
            from_tensor,
            [tf.TensorSpec([None, height, width, channels], tf.float32, name="inputs")],
        ),
    }


def export_detection(
    model,
    out: str | os.PathLike,
    data_config,
    class_names: list[str],
    version: int | None = None,
    max_detections: int = 100,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
):
    """Write a detector with its serving signatures to ``out/<version>/``.

    Returns a :class:`kerasflow.serving.export.ExportedModel`.

    Raises:
        ServingError: the version folder exists, or the model does not fit the config.
    """
    import keras

    from kerasflow.models.detector import num_classes_of
    from kerasflow.serving.export import ExportedModel, next_version

    want = (*(int(v) for v in data_config.image_size), int(data_config.channels))
    have = tuple(model.inputs[0].shape[1:])
    if have != want:
        raise ServingError(
            f"The detector's input shape {have} does not match data.image_size and "
            f"data.channels {want}. Export with the config the model was trained with."
        )
    if num_classes_of(model) != len(class_names):
        raise ServingError(
            f"The detector predicts {num_classes_of(model)} classes but {len(class_names)} "
            f"names were given: {class_names[:10]}. Set data.class_names to the model's classes."
        )
    base = Path(out)
    version = int(version) if version is not None else next_version(base)
    target = base / str(version)
    if version < 1 or target.exists():
        raise ServingError(
            f"Cannot export to {target}: the version must be a new positive number. "
            "Pass another version or remove the folder."
        )
    base.mkdir(parents=True, exist_ok=True)
    decode = {
        "max_detections": max_detections,
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=base))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        functions = detection_functions(model, data_config, class_names, **decode)
        for name in SIGNATURES:
            fn, spec = functions[name]
            archive.add_endpoint(name, fn, input_signature=spec)
        archive.write_out(str(staging / "model"), verbose=False)
        assets = staging / "model" / "assets"
        assets.mkdir(exist_ok=True)
        (assets / CLASS_NAMES_FILE).write_text("".join(f"{c}\n" for c in class_names))
        metadata = {
            "task": "detection",
            "class_names": [str(c) for c in class_names],
            "image_size": list(data_config.image_size),
            "channels": int(data_config.channels),
            "signatures": list(SIGNATURES),
            "box_format": "[ymin, xmin, ymax, xmax] pixels of the input image",
            "decode": decode,
            "data": data_config.model_dump(mode="json"),
        }
        (assets / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        os.replace(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported detector version %d to %s", version, target)
    return ExportedModel(
        path=target, version=version, class_names=list(class_names), task="detection"
    )


def detection_class_names(cfg) -> list[str]:
    """Class names of a detection run config: ``data.class_names``, else its source's."""
    if cfg.data.class_names:
        return [str(c) for c in cfg.data.class_names]
    from kerasflow.pipelines import detection

    if cfg.data.source.lower().startswith("tfds:"):
        return list(detection._open_tfds(cfg.data.source, cfg.data)[2])
    return list(detection.load_detection_source(cfg.data).class_names)


def json_predictions(outputs, min_score: float = 0.0) -> list[dict]:
    """Signature outputs -> one JSON-ready dict per image (unused rows dropped)."""
    num = outputs["num_detections"].numpy()
    boxes = outputs["boxes"].numpy()
    scores = outputs["scores"].numpy()
    ids = outputs["class_ids"].numpy()
    names = outputs["class_names"].numpy()
    result = []
    for i, n in enumerate(num):
        keep = [j for j in range(int(n)) if scores[i, j] >= min_score]
        result.append(
            {
                "boxes": [[round(float(v), 2) for v in boxes[i, j]] for j in keep],
                "scores": [round(float(scores[i, j]), 4) for j in keep],
                "class_ids": [int(ids[i, j]) for j in keep],
                "class_names": [names[i, j].decode() for j in keep],
            }
        )
    return result


class _Handler(BaseHTTPRequestHandler):
    server: _DetectionServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path in ("/ping", "/health"):
            self._send(HTTPStatus.OK, {"status": "ok", "task": "detection"})
        else:
            self._send(
                HTTPStatus.NOT_FOUND, {"error": f"unknown path {self.path}; POST /invocations"}
            )

    def do_POST(self):  # noqa: N802 - http.server's naming
        if self.path not in ("/invocations", "/predict"):
            self._send(
                HTTPStatus.NOT_FOUND, {"error": f"unknown path {self.path}; POST /invocations"}
            )
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_bytes:
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"the body is {length} bytes; the limit is {self.server.max_bytes}"},
            )
            return
        body = self.rfile.read(length)
        try:
            images = self._images(body, self.headers.get("Content-Type", ""))
            outputs = self.server.predict(image_bytes=tf.constant(images, tf.string))
        except ValueError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        except tf.errors.InvalidArgumentError as exc:
            first = exc.message.strip().splitlines()[0] if exc.message else "invalid input"
            self._send(HTTPStatus.BAD_REQUEST, {"error": f"an image could not be decoded: {first}"})
            return
        self._send(HTTPStatus.OK, {"predictions": json_predictions(outputs)})

    @staticmethod
    def _images(body: bytes, content_type: str) -> list[bytes]:
        if content_type.startswith("image/") or content_type == "application/octet-stream":
            if not body:
                raise ValueError("the request body is empty: send an image")
            return [body]
        try:
            data = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"the body is neither an image nor JSON ({exc})") from None
        if isinstance(data, dict) and "instances" in data:
            items = [i.get("b64") if isinstance(i, dict) else i for i in data["instances"]]
        elif isinstance(data, dict) and "inputs" in data and isinstance(data["inputs"], dict):
            items = data["inputs"].get("b64")
        elif isinstance(data, dict):
            items = data.get("b64")
        else:
            items = None
        if isinstance(items, str):
            items = [items]
        if not items or not all(isinstance(i, str) for i in items):
            raise ValueError('send JSON {"b64": ["<base64 image>", ...]} or an image body')
        try:
            return [base64.b64decode(i, validate=True) for i in items]
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"b64 values must be base64 strings ({exc})") from None


class _DetectionServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, saved_model_dir: Path, max_bytes: int):
        super().__init__(address, _Handler)
        self.loaded = tf.saved_model.load(str(saved_model_dir))
        self.predict = self.loaded.signatures["serving_default"]
        self.max_bytes = max_bytes


def make_server(
    export_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_payload_mb: float = 16.0,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet started) for a detection export; call ``serve_forever()``.

    Args:
        export_dir: a version folder, or the TF Serving base folder (its highest version).
        port: 0 picks a free port (``server.server_address[1]``).
    """
    path = Path(export_dir)
    if not (path / "saved_model.pb").is_file():
        versions = [p for p in path.iterdir() if p.name.isdigit()] if path.is_dir() else []
        if not versions:
            raise ServingError(
                f"{path} holds no SavedModel export. Pass a folder from export_detection."
            )
        path = max(versions, key=lambda p: int(p.name))
    meta_file = path / "assets" / METADATA_FILE
    if not meta_file.is_file() or json.loads(meta_file.read_text()).get("task") != "detection":
        raise ServingError(
            f"{path} is not a kerasflow detection export ({meta_file} says otherwise)."
        )
    return _DetectionServer((host, int(port)), path, int(max_payload_mb * 1e6))
