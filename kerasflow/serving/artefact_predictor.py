"""The served model when it is a LiteRT or ONNX artefact: the same requests, no TensorFlow.

:class:`ArtefactPredictor` is a :class:`~kerasflow.serving.predictor.Predictor`
whose calls go to an :class:`~kerasflow.serving.artefact_runtime.Artefact`
instead of SavedModel signatures. Every request check (fields, base64, image
headers against the pixel budget, batch size, dtypes, ranges) is the
Predictor's own; decoding and resizing happen here, in Pillow and NumPy
(:mod:`kerasflow.serving.pixels`), before the runtime. ``kerasflow predict``
and ``kerasflow serve`` use it for ``.tflite`` and ``.onnx`` files.

Example:
    >>> predictor = ArtefactPredictor.from_path("export/digits/model_int8.tflite")
    >>> predictor.predict_files([open("7.png", "rb").read()])[0]["class_name"]
    '7'
"""

from __future__ import annotations

import os

import numpy as np

from kerasflow.errors import ServingError
from kerasflow.serving import pixels
from kerasflow.serving.artefact_runtime import Artefact, load_artefact
from kerasflow.serving.predictor import Limits, Predictor, RequestError
from kerasflow.tasks.predictions import TaskOutputs


class ArtefactPredictor(Predictor):
    """A LiteRT/ONNX artefact behind the Predictor's request checks."""

    def __init__(self, artefact: Artefact, limits: Limits | None = None):  # noqa: D107
        # Not Predictor.__init__: that one loads SavedModel signatures with TensorFlow.
        self.limits = limits or Limits()
        self.artefact = artefact
        self.contract = artefact.contract
        self.task = TaskOutputs(artefact.task)
        self.class_names = artefact.contract["class_names"]
        self.input_shape = artefact.input_shape
        self._data = artefact.contract["data"]
        self._images = self._run_images
        self._tensor = self._run_tensor

    @classmethod
    def from_path(cls, path: str | os.PathLike, limits: Limits | None = None):
        """The artefact at ``path`` (a ``.tflite``/``.onnx`` file or a folder holding one)."""
        return cls(load_artefact(path), limits)

    def _run(self, batch: np.ndarray):
        try:
            return self.artefact.run(batch)
        except ServingError as exc:
            raise RequestError(str(exc)) from None

    def _call(self, fn, **inputs):
        return fn(**inputs)

    def _run_images(self, images):
        outputs = self._run(np.stack([pixels.prepare_image(img, self._data) for img in images]))
        # Each image's size before preprocessing: detection maps its boxes back to it.
        return {**outputs, "image_hw": np.array([np.shape(img)[:2] for img in images], np.int64)}

    def _run_tensor(self, inputs: np.ndarray):
        # The artefact takes uint8: the model's float input is rounded to whole pixels.
        return self._run(np.clip(np.floor(inputs + 0.5), 0, 255).astype(np.uint8))

    def _call_bytes(self, images: list[bytes]):
        channels = int(self.contract["channels"])
        decoded = []
        for i, data in enumerate(images):
            try:
                decoded.append(pixels.decode_file(data, channels))
            except (OSError, ValueError, SyntaxError) as exc:
                raise RequestError(
                    f"b64[{i}] is not a decodable JPEG, PNG, BMP or GIF image ({exc})."
                ) from None
        return self._run_images(decoded)


def build_artefact_app(path: str | os.PathLike, limits: Limits):
    """The ASGI app of ``kerasflow serve`` for a LiteRT/ONNX artefact."""
    from kerasflow.serving.http_app import ServingApp
    from kerasflow.version import __version__

    return ServingApp(ArtefactPredictor.from_path(path, limits), version=__version__)
