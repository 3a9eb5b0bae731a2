"""tf.data input pipelines driven by the ``data:`` section of the run config."""

from kerasflow.pipelines.builder import PreparedData, build, prepare
from kerasflow.pipelines.transforms import preprocess

__all__ = ["PreparedData", "build", "prepare", "preprocess"]
