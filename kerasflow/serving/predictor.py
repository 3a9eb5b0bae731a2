"""The served model: a kerasflow SavedModel export called through its signatures.

:class:`Predictor` is built from an export folder and its contract
(``assets/kerasflow.json``) alone: no MLflow model code, no pickles. It takes
request columns (one of the fields below) and answers one JSON-ready dict per
image, as the export's task writes it
(:meth:`kerasflow.tasks.base.Task.json_predictions`).

Fields (exactly one per request):

* ``b64`` / ``image_bytes``: base64-encoded JPEG, PNG, GIF or BMP files.
* ``images``: uint8 pixel arrays ``N x H x W [x C]`` of one size, C in 1..4.
* ``tensor``: the model's own float input, ``N x height x width x channels``,
  pixels 0..255 already resized.

Every value is checked before TensorFlow sees it: base64, the image header
(format, declared size; see :func:`kerasflow.pipelines.scan.read_header`)
against the pixel budget and against the file's own size (a short file with a
forged header is refused, not decoded to grey), the batch size, dtypes, shapes, finite values in
range. A bad value raises :class:`RequestError` with the HTTP status and a
short message that says what to send.

Example:
    >>> predictor = Predictor.from_export("export/digits/1")
    >>> predictor.predict({"b64": [base64.b64encode(png).decode()]})[0]["class_name"]
    '7'
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasflow.errors import ServingError
from kerasflow.pipelines import scan

log = logging.getLogger(__name__)

BYTES_FIELDS = ("b64", "image_bytes")
IMAGES_FIELDS = ("images",)
TENSOR_FIELDS = ("tensor",)
FIELDS = BYTES_FIELDS + IMAGES_FIELDS + TENSOR_FIELDS
FIELDS_HELP = (
    "Send exactly one of: 'b64' (base64-encoded JPEG/PNG/BMP/GIF files), "
    "'images' (uint8 pixel arrays N x H x W [x C]) or 'tensor' (the model's float input: "
    'resized 0..255 pixels), e.g. {"instances": [{"b64": "..."}]} or {"inputs": {"images": [...]}}.'
)
DEFAULT_MAX_PAYLOAD_MB = 16.0
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_IMAGE_PIXELS = scan.MAX_IMAGE_PIXELS
METADATA_FILE = "kerasflow.json"


class RequestError(ServingError):
    """A request the server refuses: ``status`` (400, 413, 415) and a short message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = int(status)

    @property
    def message(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Limits:
    """What one request may hold.

    Attributes:
        max_payload_bytes: the request body, and the decoded image bytes of a request.
        max_image_pixels: pixels one image may declare (width x height x frames), and
            the total of a request's images: decoding is bounded in memory and time.
        max_batch: images in one request.
    """

    max_payload_bytes: int = int(DEFAULT_MAX_PAYLOAD_MB * 1e6)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self):
        for name in ("max_payload_bytes", "max_image_pixels", "max_batch"):
            if getattr(self, name) < 1:
                raise ServingError(f"{name} must be positive. Received: {getattr(self, name)}")


def _too_large(message: str) -> RequestError:
    return RequestError(message, status=413)


def field_of(columns: dict) -> tuple[str, object]:
    """The one known field of a request's columns and its value."""
    if not isinstance(columns, dict):
        raise RequestError(f"The request data must be an object of fields. {FIELDS_HELP}")
    unknown = sorted(str(k)[:40] for k in columns if k not in FIELDS)[:5]
    if unknown or len(columns) != 1:
        raise RequestError(
            f"Unknown or extra input field(s) {unknown or sorted(columns)}. {FIELDS_HELP}"
        )
    return next(iter(columns.items()))


def _items(value) -> list:
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1)) if value.ndim else [value.item()]
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


class Predictor:
    """A kerasflow export behind request checks (see the module docstring)."""

    def __init__(self, loaded, contract: dict, limits: Limits | None = None):
        """Wrap a loaded SavedModel (``tf.saved_model.load``) and its contract.

        Args:
            loaded: the loaded SavedModel, with kerasflow's three signatures.
            contract: the export's ``assets/kerasflow.json``.
            limits: request limits (default: :class:`Limits`).
        """
        import tensorflow as tf

        from kerasflow import tasks
        from kerasflow.tasks import base as sig

        self.limits = limits or Limits()
        self._tf = tf
        self._loaded = loaded
        self._bytes = loaded.signatures[sig.BYTES_SIGNATURE]
        self._images = loaded.signatures[sig.IMAGES_SIGNATURE]
        self._tensor = loaded.signatures[sig.TENSOR_SIGNATURE]
        self.task = tasks.get(contract["task"])
        self.contract = contract
        self.class_names = contract["class_names"]
        self.input_shape = (*(int(v) for v in contract["image_size"]), int(contract["channels"]))

    @classmethod
    def from_export(cls, saved_model_dir: str | os.PathLike, limits: Limits | None = None):
        """Load an export folder that :func:`kerasflow.serving.trust` has already accepted."""
        import tensorflow as tf

        path = Path(saved_model_dir)
        contract = read_contract(path)
        return cls(tf.saved_model.load(str(path)), contract, limits)

    # ---- request -> signature call
    def predict(self, columns: dict) -> list[dict]:
        """Predictions for one request's columns (``{"b64": [...]}`` and the like).

        Raises:
            RequestError: a bad request (status and message say what to send).
        """
        name, value = field_of(columns)
        if name in BYTES_FIELDS:
            outputs = self._call_bytes(self._encoded(_items(value)))
        elif name in IMAGES_FIELDS:
            outputs = self._call(self._images, images=self._pixels(value))
        else:
            outputs = self._call(self._tensor, inputs=self._floats(value))
        return self.task.json_predictions(outputs, self.contract)

    def _batch_size(self, n: int) -> None:
        if n == 0:
            raise RequestError("The batch is empty: send at least one image.")
        if n > self.limits.max_batch:
            raise _too_large(
                f"The request holds {n} images; this server takes at most "
                f"{self.limits.max_batch} per request (kerasflow serve --max-batch). "
                "Send them in several requests."
            )

    def predict_files(self, images: list[bytes]) -> list[dict]:
        """Predictions for encoded image files (each header checked before decoding)."""
        self._batch_size(len(images))
        return self.task.json_predictions(self._call_bytes(self._checked(images)), self.contract)

    def _encoded(self, items: list) -> list[bytes]:
        """Base64 items -> image bytes, each header read and held to the pixel budget."""
        self._batch_size(len(items))
        out = []
        for i, item in enumerate(items):
            if isinstance(item, dict) and set(item) == {"b64"}:  # {"image_bytes": {"b64": ...}}
                item = item["b64"]
            if not isinstance(item, str):
                raise RequestError(
                    f"b64[{i}] must be a base64 string. Received a {type(item).__name__}."
                )
            if len(item) * 3 // 4 > self.limits.max_payload_bytes:
                raise _too_large(f"b64[{i}] exceeds the payload limit.")
            try:
                out.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise RequestError(f"b64[{i}] is not valid base64 ({exc}).") from None
        return self._checked(out)

    def _checked(self, images: list[bytes]) -> list[bytes]:
        """``images`` once every header is read and the request fits the byte and pixel budgets."""
        total_bytes, total_pixels = 0, 0
        budget = self.limits.max_image_pixels
        for i, data in enumerate(images):
            if not data:
                raise RequestError(f"b64[{i}] is empty; send the bytes of an image file.")
            total_bytes += len(data)
            if total_bytes > self.limits.max_payload_bytes:
                raise _too_large(
                    f"The images exceed the payload limit of "
                    f"{self.limits.max_payload_bytes / 1e6:g} MB."
                )
            try:
                header = scan.read_header(data)
            except ValueError as exc:
                raise RequestError(
                    f"b64[{i}] is not a decodable JPEG, PNG, BMP or GIF image ({exc})."
                ) from None
            if problem := scan.pixel_budget_problem(header, budget):
                raise _too_large(
                    f"b64[{i}]: {problem}. Send a smaller image (kerasflow serve "
                    "--max-image-pixels sets the budget)."
                )
            if problem := scan.coded_size_problem(header, len(data)):
                raise RequestError(
                    f"b64[{i}] is not a decodable {header.format} image: {problem}. "
                    "Send the whole file."
                )
            total_pixels += header.pixels
            if total_pixels > budget:
                raise _too_large(
                    f"The images of this request declare {total_pixels / 1e6:.1f} megapixels "
                    f"together (through b64[{i}]), over the budget of {budget / 1e6:g} "
                    "megapixels a request. Send fewer images per request."
                )
        return images

    def _pixels(self, value) -> np.ndarray:
        arr = _numeric_array(value, "images", "a batch of equally sized uint8 pixel arrays")
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4 or not 1 <= arr.shape[-1] <= 4 or min(arr.shape[1:3], default=0) < 1:
            if arr.size == 0:
                self._batch_size(0)
            raise RequestError(
                f"'images' must have shape N x H x W or N x H x W x C with C in 1..4. "
                f"Received shape {arr.shape}."
            )
        self._batch_size(arr.shape[0])
        height, width = arr.shape[1:3]
        if height * width > self.limits.max_image_pixels:
            raise _too_large(
                f"'images' are {height}x{width} pixels, over the budget of "
                f"{self.limits.max_image_pixels / 1e6:g} megapixels an image."
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise RequestError("'images' must not hold NaN or infinite values.")
        if arr.min() < 0 or arr.max() > 255 or (arr.dtype.kind == "f" and np.any(arr % 1)):
            raise RequestError("'images' pixel values must be integers in 0..255.")
        return arr.astype(np.uint8)

    def _floats(self, value) -> np.ndarray:
        arr = _numeric_array(value, "tensor", "the model's float input")
        want = " x ".join(map(str, self.input_shape))
        if arr.ndim != 4 or arr.shape[1:] != self.input_shape:
            if arr.size == 0:
                self._batch_size(0)
            raise RequestError(f"'tensor' must have shape N x {want}. Received shape {arr.shape}.")
        self._batch_size(arr.shape[0])
        if not np.isfinite(arr).all():
            raise RequestError(
                "'tensor' must not hold NaN or infinite values: send pixels in 0..255."
            )
        if arr.min() < 0 or arr.max() > 255:
            raise RequestError(
                f"'tensor' values must be pixels in 0..255. Received values in "
                f"{float(arr.min()):g}..{float(arr.max()):g}."
            )
        return arr.astype(np.float32)

    def _call(self, fn, **inputs):
        try:
            return fn(**inputs)
        except self._tf.errors.InvalidArgumentError as exc:
            raise RequestError(
                f"The model rejected the input: {_first_line(exc.message)}"
            ) from None

    def _call_bytes(self, images: list[bytes]):
        tf = self._tf
        # A file that fails inside the signature's decode loop surfaces as InvalidArgumentError,
        # or as CancelledError when the loop's other iterations are cancelled first.
        bad_input = (tf.errors.InvalidArgumentError, tf.errors.CancelledError)
        try:
            return self._bytes(image_bytes=tf.constant(images, dtype=tf.string))
        except bad_input:
            pass
        # Find the file that fails, to name it (only on the error path).
        for i, data in enumerate(images):
            try:
                self._bytes(image_bytes=tf.constant([data], dtype=tf.string))
            except bad_input as exc:
                raise RequestError(
                    f"b64[{i}] is not a decodable JPEG, PNG, BMP or GIF image "
                    f"({_first_line(exc.message)})."
                ) from None
        raise RequestError("The images could not be decoded together; send them one by one.")


def _numeric_array(value, name: str, what: str) -> np.ndarray:
    """``value`` as a numeric (int or float) array, or a 400 that says what to send."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise RequestError(f"'{name}' must be {what} of one shape ({exc}).") from None
    if arr.dtype.kind not in "iuf":
        kind = {"U": "strings", "S": "bytes", "b": "booleans", "O": "mixed values"}.get(
            arr.dtype.kind, arr.dtype.name
        )
        raise RequestError(f"'{name}' must be {what} of numbers. Received {kind}.")
    return arr


def _first_line(text: str) -> str:
    """The informative line of a TensorFlow error (not the graph and node boilerplate)."""
    boilerplate = ("Graph execution error", "Detected at node", "<stack traces", "[[")
    for line in str(text).splitlines():
        line = line.strip()
        if line and not line.startswith(boilerplate):
            return line[:300]
    return "no details"


def read_contract(saved_model_dir: str | os.PathLike) -> dict:
    """The export's contract (``assets/kerasflow.json``), checked for what serving reads.

    Raises:
        ServingError: the file is missing, is not JSON, or lacks a field; the message names it.
    """
    from kerasflow import tasks

    path = Path(saved_model_dir) / "assets" / METADATA_FILE
    if not path.is_file():
        raise ServingError(
            f"{saved_model_dir} is not a kerasflow export: {path} is missing. "
            "Export it with `kerasflow export`."
        )
    try:
        contract = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServingError(f"{path} is not valid JSON ({exc}). Export the model again.") from None
    if not isinstance(contract, dict) or contract.get("task") not in tasks.names():
        raise ServingError(
            f"{path} names no known task (one of {sorted(tasks.names())}). Export the model again."
        )
    for key in ("class_names", "image_size", "channels"):
        if key not in contract:
            raise ServingError(f"{path} has no {key!r} field. Export the model again.")
    return contract
