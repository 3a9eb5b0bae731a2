"""``kerasflow serve``: MLflow's scoring server for a kerasflow serving model.

MODEL may be ``models:/NAME@alias`` or ``models:/NAME/VERSION`` (the serving
model attached to that version is used when there is one),
``runs:/RUN_ID/model``, a ``.keras`` file, a SavedModel export folder (or its
TF Serving base folder: the highest version), or a saved serving model
folder (with an ``MLmodel`` file). Anything that is not already a serving
model is exported first, into a temporary folder.

The app is MLflow's own scoring server (``/invocations``, ``/ping``,
``/health``, ``/version``) wrapped in a request-size limit that answers 413
before the body is parsed. It binds to 127.0.0.1 unless told otherwise.

Example:
    >>> from kerasflow.serving.server import serve
    >>> serve("models:/digits-cnn@champion", port=5001)  # blocks
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from kerasflow.errors import ServingError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
DEFAULT_MAX_PAYLOAD_MB = 16.0


class PayloadLimit:
    """ASGI middleware: reject request bodies over ``max_bytes`` with HTTP 413 and a JSON message."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _reject(self, send, size: int | None) -> None:
        seen = f"{size / 1e6:.2f} MB" if size is not None else "more than that"
        body = json.dumps(
            {
                "error_code": "REQUEST_TOO_LARGE",
                "message": f"The request body is {seen}; this server accepts at most "
                f"{self.max_bytes / 1e6:g} MB (kerasflow serve --max-payload-mb).",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = None
            if size is not None and size > self.max_bytes:
                return await self._reject(send, size)
            if size is not None:
                return await self.app(scope, receive, send)
        # No (valid) content-length: read the body here, counting, then replay it.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, receive, send)
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_bytes:
                return await self._reject(send, None)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _saved_model_dir(path: Path) -> Path | None:
    if (path / "saved_model.pb").is_file():
        return path
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def prepare_serving_model(
    model: str,
    workdir: Path,
    max_payload_mb: float | None = None,
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
) -> str:
    """A local path or MLflow URI of a serving model for MODEL, exporting into ``workdir`` if needed."""
    from kerasflow.serving import mlflow_model as tracked
    from kerasflow.serving.export import export, read_metadata

    limit = DEFAULT_MAX_PAYLOAD_MB if max_payload_mb is None else max_payload_mb
    path = Path(model)
    if not model.startswith(("models:/", "runs:/")) and path.is_dir():
        if (path / "MLmodel").is_file():
            return str(path)  # checked by load_serving_model before it loads
        saved = _saved_model_dir(path)
        if saved is None:
            raise ServingError(
                f"{path} is neither a SavedModel export (saved_model.pb) nor an MLflow model "
                "(MLmodel). Pass a folder written by `kerasflow export` or an MLflow model."
            )
        read_metadata(saved)  # a clear error for SavedModels that kerasflow did not export
        return str(tracked.save_serving_model(saved, workdir / "serving_model", limit))
    if config is None and not overrides:
        logged = tracked.serving_model_uri(model, uri)
        if logged:
            log.info("serving %s through its logged serving model %s", model, logged)
            return logged
    exported = export(model, workdir / "export", config=config, overrides=overrides, uri=uri)
    return str(tracked.save_serving_model(exported.path, workdir / "serving_model", limit))


def build_app(
    model_uri: str,
    max_payload_mb: float | None = None,
    uri: str | None = None,
    workdir: str | os.PathLike | None = None,
):
    """MLflow's scoring app for a serving model, behind the request-size limit.

    ``max_payload_mb`` None uses the limit saved with the model (the run's
    ``export.max_payload_mb``), else 16 MB.
    """
    from kerasflow.serving import mlflow_model as tracked

    dst = Path(workdir) / "downloaded" if workdir is not None else None
    pyfunc_model = tracked.load_serving_model(model_uri, max_payload_mb, uri, dst)
    if max_payload_mb is None:
        max_payload_mb = tracked.saved_payload_limit_mb(pyfunc_model, DEFAULT_MAX_PAYLOAD_MB)
    return PayloadLimit(tracked.scoring_app(pyfunc_model), int(max_payload_mb * 1e6))


def serve(
    model: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_payload_mb: float | None = None,
    config=None,
    overrides: list[str] | None = None,
    uri: str | None = None,
    on_ready=None,
) -> None:
    """Serve MODEL over HTTP until interrupted (blocks).

    Args:
        model: see the module docstring.
        host: bind address; 127.0.0.1 keeps it on this machine.
        port: TCP port.
        max_payload_mb: larger request bodies get HTTP 413 (default: the limit saved
            with the model, the run's ``export.max_payload_mb``, else 16).
        config: the run config for a ``.keras`` file (default: the model's run's config).
        on_ready: called with the app's URL once the model is loaded, before serving.
    """
    import uvicorn

    if max_payload_mb is not None and max_payload_mb <= 0:
        raise ServingError(f"max_payload_mb must be positive. Received: {max_payload_mb}")
    workdir = Path(tempfile.mkdtemp(prefix="kerasflow-serve-"))
    try:
        target = prepare_serving_model(model, workdir, max_payload_mb, config, overrides, uri)
        app = build_app(target, max_payload_mb, uri, workdir)
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(app, host=host, port=int(port), log_level="warning", workers=1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
