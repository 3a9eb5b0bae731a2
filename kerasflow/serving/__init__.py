"""Serving: SavedModel export (TF Serving layout), the MLflow pyfunc model and the HTTP server."""

from kerasflow.serving.export import ExportedModel, export, export_saved_model

__all__ = ["ExportedModel", "export", "export_saved_model"]
