"""The model-from-code file MLflow stores with a kerasflow serving model.

MLflow copies this file into the logged model and runs it on load; it names
the :class:`~kerasflow.serving.pyfunc.ServingModel` to use, so no pickled
Python object is stored or loaded.
"""

from mlflow.models import set_model

from kerasflow.serving.pyfunc import ServingModel

set_model(ServingModel())
