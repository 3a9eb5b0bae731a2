"""tf.data input pipelines driven by the ``data:`` section of the run config.

Public entry points: :func:`prepare` (load + split once, then
``PreparedData.dataset(split)``), :func:`build`, :func:`preprocess` (the
deterministic part the serving SavedModel reuses) and :func:`decode_image`.

Modules: ``sources`` (every ``data.source`` kind), ``scan`` (Pillow header
checks), ``splits`` (stable hash splits), ``transforms`` (pure TF image ops),
``builder`` (the plan and ``PreparedData``), ``check`` (``kerasflow data
check``), ``preview`` (``kerasflow data preview``), ``synthetic`` (the offline
shapes segmentation set).
"""

from kerasflow.pipelines.builder import PreparedData, Step, build, prepare
from kerasflow.pipelines.sources import SourceData, from_arrays, load_source
from kerasflow.pipelines.transforms import decode_image, decode_mask, preprocess

__all__ = [
    "PreparedData",
    "SourceData",
    "Step",
    "build",
    "decode_image",
    "decode_mask",
    "from_arrays",
    "load_source",
    "prepare",
    "preprocess",
]
