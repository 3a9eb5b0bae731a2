"""The HTTP app of ``kerasflow serve``: a small ASGI app in front of a :class:`Predictor`.

Routes: ``POST /invocations`` (the MLflow/TF Serving request forms below),
``GET /ping`` and ``GET /health`` (200 once the model is loaded), ``GET
/version``. Request bodies:

* ``Content-Type: application/json``: ``{"instances": [{"b64": "..."}, ...]}``,
  ``{"instances": [{"image_bytes": {"b64": "..."}}]}``, ``{"inputs": {FIELD: value}}``
  or ``{"inputs": [pixel arrays]}`` (fields: see :mod:`kerasflow.serving.predictor`).
* ``Content-Type: image/png`` (``image/jpeg``, ``image/gif``, ``image/bmp``,
  ``application/octet-stream``): one image file as the body.

The app trusts nothing it is sent. A body over the payload limit gets 413
whether or not it declares a Content-Length: the app reads and discards the
body (up to :data:`DRAIN_LIMIT_BYTES`) before answering, so a client that is
still sending sees the 413, not a connection reset. JSON nested deeper than
:data:`MAX_JSON_DEPTH` is refused before it is parsed; ``NaN`` and
``Infinity`` literals are refused while parsing. Every response carries an
``X-Request-Id`` header; a 500 (a fault of the server, never of the request)
is logged with that id, and its body carries it.

Example:
    >>> app = ServingApp(Predictor.from_export("export/digits/1"))
    >>> uvicorn.run(app, host="127.0.0.1", port=5001)
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid

import numpy as np

from kerasflow.serving.predictor import FIELDS_HELP, Predictor, RequestError

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 8  # {"inputs": {"images": N x H x W x C}} is 6 deep
DRAIN_LIMIT_BYTES = 256 * 2**20  # read and discard at most this much of an over-size body
IMAGE_CONTENT_TYPES = frozenset(
    ["image/png", "image/jpeg", "image/jpg", "image/gif", "image/bmp", "application/octet-stream"]
)
REQUEST_KEYS = ("instances", "inputs")
REQUEST_HELP = (
    'POST JSON {"instances": [{"b64": "<base64 image>"}, ...]} or {"inputs": {"b64": [...]}} '
    "with Content-Type: application/json, or one image file with Content-Type: image/png "
    "(image/jpeg, image/gif, image/bmp)."
)
_ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    404: "ENDPOINT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_ERROR",
}
# A JSON string, escapes included (the unrolled form: no backtracking per character).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, without parsing it.

    Strings are cut out first (a bracket inside a string does not count), so
    the cost is a regex pass and a cumulative sum over the brackets.
    """
    skeleton = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not skeleton:
        return 0
    brackets = np.frombuffer(skeleton, np.uint8)
    opens = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opens, 1, -1)).max())


def _reject_constant(name: str):
    raise RequestError(
        f"The JSON holds {name}; numbers must be finite. Send pixel values in 0..255."
    )


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH):
    """Strict JSON: bounded depth, UTF-8, no ``NaN``/``Infinity``.

    Raises:
        RequestError: 400 with what is wrong.
    """
    if not body.strip():
        raise RequestError(f"The request body is empty. {REQUEST_HELP}")
    depth = json_depth(body)
    if depth > max_depth:
        raise RequestError(
            f"The JSON is nested {depth} levels deep; requests need at most {max_depth}. "
            f"{REQUEST_HELP}"
        )
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"The body is not valid JSON ({exc}). {REQUEST_HELP}") from None
    except RecursionError:  # the depth check makes this unreachable; kept as a 400
        raise RequestError(f"The JSON is nested too deeply. {REQUEST_HELP}") from None


def columns_of(data) -> dict:
    """A parsed request body -> ``{field: value}`` for :meth:`Predictor.predict`."""
    if not isinstance(data, dict):
        raise RequestError(f"The JSON body must be an object. {REQUEST_HELP}")
    keys = sorted(str(k)[:40] for k in data)
    if len(keys) != 1 or keys[0] not in REQUEST_KEYS:
        raise RequestError(
            f"Unknown or extra top-level key(s) {keys[:5]}: send exactly one of "
            f"{list(REQUEST_KEYS)}. {REQUEST_HELP}"
        )
    key = keys[0]
    value = data[key]
    if key == "inputs":
        if isinstance(value, dict):
            return value
        if isinstance(value, list):
            return {_array_field(value): value}
        raise RequestError(f"'inputs' must be an object of one field or an array. {FIELDS_HELP}")
    if not isinstance(value, list):
        raise RequestError(f"'instances' must be an array. {REQUEST_HELP}")
    if value and all(isinstance(v, dict) for v in value):
        names = {frozenset(v) for v in value}
        if len(names) != 1 or len(next(iter(names))) != 1:
            raise RequestError(
                f"Every instance must be an object with the same one field. {FIELDS_HELP}"
            )
        (name,) = next(iter(names))
        return {name: [v[name] for v in value]}
    if any(isinstance(v, dict) for v in value):
        raise RequestError(f"'instances' mixes objects and arrays. {FIELDS_HELP}")
    return {_array_field(value): value}


def _array_field(value: list) -> str:
    """``images`` for integer pixel arrays, ``tensor`` for float input (as MLflow guesses)."""
    flat = value
    while isinstance(flat, list) and flat:
        flat = flat[0]
    return "tensor" if isinstance(flat, float) else "images"


def _media_type(headers: dict) -> str | None:
    raw = headers.get(b"content-type")
    if raw is None:
        return None
    return raw.decode("latin-1").split(";", 1)[0].strip().lower()


class ServingApp:
    """ASGI app: the routes and request handling in the module docstring.

    Args:
        predictor: the served model.
        concurrency: requests predicted at once (each runs in a worker thread, so
            ``/ping`` answers while a batch decodes).
    """

    def __init__(self, predictor: Predictor, concurrency: int = 2, version: str = ""):
        self.predictor = predictor
        self.limits = predictor.limits
        self.version = version
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        request_id = uuid.uuid4().hex[:16]
        try:
            status, body = await self._route(scope, receive, request_id)
        except RequestError as exc:
            status, body = exc.status, {"message": exc.message}
        except Exception:  # a fault of ours: logged with its id, never the request's fault
            log.exception("request %s failed (%s %s)", request_id, scope["method"], scope["path"])
            status = 500
            body = {
                "message": f"Internal server error (request id {request_id}); "
                "the server log has the details."
            }
        if status >= 400:
            body = {"error_code": _ERROR_CODES.get(status, "BAD_REQUEST"), **body}
            body["request_id"] = request_id
        await self._send(send, status, body, request_id)

    async def _route(self, scope, receive, request_id: str) -> tuple[int, dict]:
        path, method = scope["path"], scope["method"]
        if path in ("/ping", "/health", "/version"):
            if method not in ("GET", "HEAD"):
                raise RequestError(f"{path} answers GET.", status=405)
            if path == "/version":
                return 200, {"kerasflow": self.version}
            return 200, {"status": "ok", "task": self.predictor.task.name}
        if path != "/invocations":
            raise RequestError(f"Unknown path {path[:100]!r}; POST /invocations.", status=404)
        if method != "POST":
            raise RequestError("/invocations answers POST.", status=405)
        headers = dict(scope.get("headers") or [])
        body = await self._read_body(headers, receive)
        async with self._slots:
            predictions = await asyncio.to_thread(self._predict, headers, body)
        return 200, {"predictions": predictions}

    def _predict(self, headers: dict, body: bytes) -> list[dict]:
        media = _media_type(headers)
        if media is None:
            raise RequestError(f"The request has no Content-Type header. {REQUEST_HELP}")
        if media in IMAGE_CONTENT_TYPES:
            if not body:
                raise RequestError("The request body is empty: send an image file.")
            return self.predictor.predict_files([body])
        if media != "application/json":
            raise RequestError(
                f"Content-Type {media[:60]!r} is not supported. {REQUEST_HELP}", status=415
            )
        return self.predictor.predict(columns_of(parse_json(body)))

    async def _read_body(self, headers: dict, receive) -> bytes:
        """The body, or a 413 once it is over the limit (after draining what the client sends)."""
        limit = self.limits.max_payload_bytes
        declared = headers.get(b"content-length")
        try:
            size = int(declared) if declared is not None else None
        except ValueError:
            raise RequestError("The Content-Length header is not a number.") from None
        if size is not None and size > DRAIN_LIMIT_BYTES:
            raise self._over_limit(size)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError("The client closed the connection.")
            part = message.get("body", b"")
            total += len(part)
            if total <= limit:
                chunks.append(part)
            elif chunks:
                chunks = []  # over the limit: keep reading (and dropping) to the end
            if total > DRAIN_LIMIT_BYTES or not message.get("more_body", False):
                break
        if total > limit:
            raise self._over_limit(size if size is not None else total)
        return b"".join(chunks)

    def _over_limit(self, size: int) -> RequestError:
        return RequestError(
            f"The request body is {size / 1e6:.2f} MB; this server accepts at most "
            f"{self.limits.max_payload_bytes / 1e6:g} MB (kerasflow serve --max-payload-mb).",
            status=413,
        )

    @staticmethod
    async def _send(send, status: int, body: dict, request_id: str) -> None:
        data = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
