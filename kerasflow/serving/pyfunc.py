"""The MLflow pyfunc model that serves an exported SavedModel.

It is logged as a *model from code* (``python_model=`` the path of
:mod:`kerasflow.serving.pyfunc_code`), so MLflow stores a small Python file
instead of a cloudpickle, and the SavedModel folder is its only artifact:
nothing is unpickled when it loads. ``load_context`` loads the SavedModel
with ``tf.saved_model.load`` and ``predict`` calls its signatures directly,
without ``model.predict`` per request.

Request bodies (MLflow's ``/invocations`` JSON):

* ``{"instances": [{"b64": "<base64 JPEG/PNG/BMP/GIF>"}, ...]}`` (the TF Serving
  form) or ``{"inputs": {"b64": ["<base64>", ...]}}``: encoded image files.
* ``{"inputs": {"images": [[[[0..255, ...]]]]}}``: a batch of uint8 pixel
  arrays ``(N, H, W[, C])`` of one size, C in 1..4.
* ``{"inputs": {"tensor": [...]}}``: the model's own float input, pixels 0..255 already resized.

The response is ``{"predictions": [{"class_id", "class_name", "probabilities"}, ...]}``
(segmentation: ``{"class_map"}`` per image). A bad request raises an
``MlflowException`` that the scoring server turns into HTTP 400 with its
message.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

SAVED_MODEL_ARTIFACT = "saved_model"
DEFAULT_MAX_PAYLOAD_MB = 16.0
BYTES_FIELDS = ("b64", "image_bytes")
IMAGES_FIELDS = ("images",)
TENSOR_FIELDS = ("tensor",)
FIELDS_HELP = (
    "Send exactly one of: 'b64' (base64-encoded JPEG/PNG/BMP/GIF files), "
    "'images' (uint8 pixel arrays N x H x W [x C]) or 'tensor' (the model's float input: resized 0..255 pixels), "
    'e.g. {"instances": [{"b64": "..."}]} or {"inputs": {"images": [...]}}.'
)


class RequestError(MlflowException):
    """A bad request: HTTP 400 with exactly this message.

    MLflow's scoring server prefixes a prediction error's message with the
    whole request data; keeping the first message set avoids echoing (possibly
    megabytes of) payload back to the client.
    """

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._request_message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_request_message"):
            self._request_message = value


def _as_columns(model_input) -> dict:
    if isinstance(model_input, dict):
        return model_input
    if isinstance(model_input, np.ndarray):
        return {"images" if model_input.dtype.kind in "iu" else "tensor": model_input}
    if hasattr(model_input, "columns"):  # a pandas DataFrame (dataframe_split / records)
        return {str(c): model_input[c].to_numpy() for c in model_input.columns}
    if isinstance(model_input, list):
        return {"images": np.asarray(model_input)}
    raise RequestError(
        f"Unsupported request data of type {type(model_input).__name__}. {FIELDS_HELP}"
    )


def _field(columns: dict) -> tuple[str, object]:
    known = BYTES_FIELDS + IMAGES_FIELDS + TENSOR_FIELDS
    unknown = sorted(str(k) for k in columns if k not in known)
    if unknown or len(columns) != 1:
        raise RequestError(
            f"Unknown or extra input field(s) {unknown or sorted(columns)}. {FIELDS_HELP}"
        )
    return next(iter(columns.items()))


def _decode_b64(items, limit: float) -> list[bytes]:
    out, total = [], 0
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray) and item.ndim == 0:  # MLflow wraps row objects
            item = item.item()
        if (
            isinstance(item, dict) and "b64" in item
        ):  # {"image_bytes": {"b64": ...}} TF Serving form
            item = item["b64"]
        if isinstance(item, bytes):
            item = item.decode("ascii", errors="replace")
        if not isinstance(item, str):
            raise RequestError(
                f"b64[{i}] must be a base64 string. Received a {type(item).__name__}."
            )
        try:
            data = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(f"b64[{i}] is not valid base64 ({exc}).") from None
        if not data:
            raise RequestError(f"b64[{i}] is empty; send the bytes of an image file.")
        total += len(data)
        if total > limit:
            raise RequestError(f"The images exceed the payload limit of {limit / 1e6:g} MB.")
        out.append(data)
    return out


class ServingModel(PythonModel):
    """Serves a kerasflow SavedModel export (see the module docstring for the request format)."""

    def load_context(self, context):
        import tensorflow as tf

        from kerasflow import tasks
        from kerasflow.tasks import base as sig

        path = Path(context.artifacts[SAVED_MODEL_ARTIFACT])
        self._loaded = tf.saved_model.load(str(path))
        self._bytes = self._loaded.signatures[sig.BYTES_SIGNATURE]
        self._images = self._loaded.signatures[sig.IMAGES_SIGNATURE]
        self._tensor = self._loaded.signatures[sig.TENSOR_SIGNATURE]
        meta = json.loads((path / "assets" / "kerasflow.json").read_text())
        self.task = tasks.get(meta["task"])
        self.contract = meta
        self.class_names = meta["class_names"]
        self.input_shape = (*meta["image_size"], meta["channels"])
        config = context.model_config or {}
        self.max_payload_bytes = float(config.get("max_payload_mb", DEFAULT_MAX_PAYLOAD_MB)) * 1e6
        self._tf = tf

    # ---- request -> signature call
    def predict(self, context, model_input, params=None):
        name, value = _field(_as_columns(model_input))
        if name in BYTES_FIELDS:
            items = list(np.asarray(value, dtype=object).reshape(-1))
            self._not_empty(items)
            images = _decode_b64(items, self.max_payload_bytes)
            outputs = self._call_bytes(images)
        elif name in IMAGES_FIELDS:
            outputs = self._call(self._images, images=self._pixels(value))
        else:
            outputs = self._call(self._tensor, inputs=self._floats(value))
        return self._response(outputs)

    @staticmethod
    def _not_empty(items) -> None:
        if len(items) == 0:
            raise RequestError("The batch is empty: send at least one image.")

    def _pixels(self, value) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except ValueError as exc:
            raise RequestError(f"'images' must be arrays of one size ({exc}).") from None
        if arr.size == 0:
            self._not_empty([])
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            raise RequestError(
                "'images' must be a batch of equally sized numeric pixel arrays N x H x W [x C]."
            )
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4 or not 1 <= arr.shape[-1] <= 4 or min(arr.shape[1:3]) < 1:
            raise RequestError(
                f"'images' must have shape N x H x W or N x H x W x C with C in 1..4. "
                f"Received shape {arr.shape}."
            )
        if arr.min() < 0 or arr.max() > 255 or (arr.dtype.kind == "f" and np.any(arr % 1)):
            raise RequestError("'images' pixel values must be integers in 0..255.")
        if arr.size > self.max_payload_bytes:  # one byte per uint8 pixel
            raise RequestError(
                f"The images exceed the payload limit of {self.max_payload_bytes / 1e6:g} MB."
            )
        return arr.astype(np.uint8)

    def _floats(self, value) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"'tensor' must be a numeric array ({exc}).") from None
        if arr.size == 0:
            self._not_empty([])
        if arr.shape[1:] != self.input_shape:
            raise RequestError(
                f"'tensor' must have shape N x {' x '.join(map(str, self.input_shape))}. "
                f"Received shape {arr.shape}."
            )
        return arr

    def _call(self, fn, **inputs):
        try:
            return fn(**inputs)
        except self._tf.errors.InvalidArgumentError as exc:
            raise RequestError(
                f"The model rejected the input: {_first_line(exc.message)}"
            ) from None

    def _call_bytes(self, images: list[bytes]):
        tf = self._tf
        try:
            return self._bytes(image_bytes=tf.constant(images, dtype=tf.string))
        except tf.errors.InvalidArgumentError:
            pass
        # Find the file that fails, to name it (only on the error path).
        for i, data in enumerate(images):
            try:
                self._bytes(image_bytes=tf.constant([data], dtype=tf.string))
            except tf.errors.InvalidArgumentError as exc:
                raise RequestError(
                    f"b64[{i}] is not a decodable JPEG, PNG, BMP or GIF image "
                    f"({_first_line(exc.message)})."
                ) from None
        raise RequestError("The images could not be decoded together; send them one by one.")

    def _response(self, outputs) -> list[dict]:
        return self.task.json_predictions(outputs, self.contract)


def _first_line(text: str) -> str:
    """The informative line of a TensorFlow error (not the graph and node boilerplate)."""
    boilerplate = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    for line in str(text).splitlines():
        line = line.strip()
        if line and not line.startswith(boilerplate):
            return line
    return "no details"
