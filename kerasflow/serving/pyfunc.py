"""The MLflow pyfunc model that serves an exported SavedModel (for MLflow's own tools).

It is logged as a *model from code* (``python_model=`` the path of
:mod:`kerasflow.serving.pyfunc_code`), so MLflow stores a small Python file
instead of a cloudpickle, and the SavedModel folder is its only artifact:
nothing is unpickled when MLflow loads it. ``kerasflow serve`` does not use
MLflow's loader at all: it checks the folder
(:mod:`kerasflow.serving.trust`) and builds the same
:class:`~kerasflow.serving.predictor.Predictor` from the SavedModel itself.

Request data is as in :mod:`kerasflow.serving.predictor`; MLflow's JSON forms
(``{"instances": [{"b64": ...}]}``, ``{"inputs": {"images": [...]}}``) reach
``predict`` as columns. A bad request raises an ``MlflowException`` that
MLflow's scoring server turns into HTTP 400 with its message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from kerasflow.errors import ServingError
from kerasflow.serving.predictor import (
    DEFAULT_MAX_PAYLOAD_MB,
    FIELDS_HELP,
    Limits,
    Predictor,
)
from kerasflow.serving.predictor import RequestError as _Refused

SAVED_MODEL_ARTIFACT = "saved_model"


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


class ServingModel(PythonModel):
    """Serves a kerasflow SavedModel export through a :class:`Predictor`."""

    def load_context(self, context):
        """Load the SavedModel artifact once its graph ops and its own digest claim check out.

        MLflow's loader has already trusted this folder's ``MLmodel``, so only the
        tracking-store check of ``kerasflow serve`` can vouch for it; here an export
        whose files no longer match the digest it was written with is refused.
        """
        from kerasflow.serving.allocator import release_memory_after_requests
        from kerasflow.serving.digest import claimed_digest, content_digest
        from kerasflow.serving.trust import check_saved_model_graph

        release_memory_after_requests()  # before the SavedModel loads (MLflow's scoring server)
        config = context.model_config or {}
        payload = float(config.get("max_payload_mb", DEFAULT_MAX_PAYLOAD_MB))
        saved = Path(context.artifacts[SAVED_MODEL_ARTIFACT])
        check_saved_model_graph(saved)
        claimed, actual = claimed_digest(saved), content_digest(saved)
        if claimed != actual:
            raise ServingError(
                f"{saved} is refused: its content digest {actual} is not the one it was "
                f"exported with ({claimed}); its files changed after export. Export it again."
            )
        self._predictor = Predictor.from_export(saved, Limits(max_payload_bytes=int(payload * 1e6)))

    def predict(self, context, model_input, params=None):
        columns = _as_columns(model_input)
        columns = {
            k: [v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v for v in value]
            if isinstance(value, np.ndarray) and value.dtype == object
            else value
            for k, value in columns.items()
        }
        try:
            return self._predictor.predict(columns)
        except _Refused as exc:
            raise RequestError(exc.message) from None
