"""A small standard-library HTTP server for any kerasflow SavedModel export.

``kerasflow serve`` runs kerasflow's ASGI app; this one needs nothing but the
standard library, TensorFlow and the export folder, for quick checks and
embedded use. It loads an export only after the same checks as ``serve``
(graph ops, content digest), and holds requests to the same limits (payload,
batch, each image's header against the pixel budget and its own file size)
through the same :class:`~kerasflow.serving.predictor.Predictor`.
``POST /invocations`` with an image body (``Content-Type: image/...``) or JSON
``{"b64": [...]}`` (or ``{"instances": [{"b64": ...}]}``) answers
``{"predictions": [...]}``, each prediction as the export's task writes it
(:meth:`kerasflow.tasks.base.Task.json_predictions`): class names and
probabilities, label names over their thresholds, class maps or boxes.

Example:
    >>> server = make_server("export/shapes", port=8080)
    >>> server.serve_forever()
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kerasflow.errors import ServingError
from kerasflow.serving.allocator import release_memory_after_requests
from kerasflow.serving.predictor import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IMAGE_PIXELS,
    Limits,
    Predictor,
    RequestError,
    read_contract,
)

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: _ExportServer

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
            self._send(HTTPStatus.OK, {"status": "ok", "task": self.server.predictor.task.name})
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
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be a byte count"})
            return
        if length > self.server.max_bytes:
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"the body is {length} bytes; the limit is {self.server.max_bytes}"},
            )
            return
        body = self.rfile.read(length)
        try:
            images = self._images(body, self.headers.get("Content-Type", ""))
            with self.server.slots:  # at most `concurrency` decodes in memory at once
                predictions = self.server.predictor.predict_files(images)
        except RequestError as exc:  # batch, header, pixel budget, file size, decoding
            self._send(exc.status, {"error": exc.message})
            return
        except ValueError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._send(HTTPStatus.OK, {"predictions": predictions})

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


class _ExportServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, saved_model_dir: Path, limits: Limits, concurrency: int):
        super().__init__(address, _Handler)
        self.predictor = Predictor.from_export(saved_model_dir, limits)
        self.max_bytes = limits.max_payload_bytes
        self.slots = threading.BoundedSemaphore(concurrency)


def make_server(
    export_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_payload_mb: float = 16.0,
    digest: str | None = None,
    trust_saved_model: bool = False,
    uri: str | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_batch: int = DEFAULT_MAX_BATCH,
    concurrency: int = 2,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet started) for a kerasflow export; call ``serve_forever()``.

    The export is checked as ``kerasflow serve`` checks it before anything of it
    is loaded: no file-system or process ops in its graph, and a content digest
    that the tracking store (``uri``) records or that ``digest`` names
    (:func:`kerasflow.serving.mlflow_model.verify_export`).

    Args:
        export_dir: a version folder, or the TF Serving base folder (its highest version).
        port: 0 picks a free port (``server.server_address[1]``).
        digest: the export's digest as ``kerasflow export`` printed it.
        trust_saved_model: load it even when its digest is unknown (logged as a warning).
        uri: the tracking store to look the digest up in (default: the usual one).
        max_image_pixels: pixels an image may declare, and a request's images together
            (413 over it, before anything is decoded).
        max_batch: images one request may hold (413 over it).
        concurrency: requests predicted at once (as ``kerasflow serve``): with the pixel
            budget, this bounds the memory decoding can take.

    Raises:
        ServingError: not a kerasflow export, forbidden graph ops, or an unknown digest.
    """
    from kerasflow.serving.mlflow_model import verify_export
    from kerasflow.serving.trust import check_saved_model_graph

    release_memory_after_requests()  # before TensorFlow allocates (kerasflow.serving.allocator)

    path = Path(export_dir)
    if not (path / "saved_model.pb").is_file():
        versions = [p for p in path.iterdir() if p.name.isdigit()] if path.is_dir() else []
        if not versions:
            raise ServingError(
                f"{path} holds no SavedModel export. Pass a folder that `kerasflow export` wrote."
            )
        path = max(versions, key=lambda p: int(p.name))
    read_contract(path)  # a kerasflow export, before anything of it is loaded
    check_saved_model_graph(path)
    verify_export(path, str(path), uri, digest, trust_saved_model)
    limits = Limits(int(max_payload_mb * 1e6), int(max_image_pixels), int(max_batch))
    return _ExportServer((host, int(port)), path, limits, int(concurrency))
