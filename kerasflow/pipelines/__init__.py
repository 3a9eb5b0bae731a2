"""tf.data input pipelines driven by the ``data:`` section of the run config.

Public entry points: :func:`prepare` (load + split once, then
``PreparedData.dataset(split)``), :func:`build`, :func:`prepare_detection`
(box sources), :func:`preprocess` (the deterministic part the serving
SavedModel reuses) and :func:`decode_image`.

Every example is ``(image, target)``; the target kind is one of ``class``
(an int64 class id), ``mask`` (an ``(H, W)`` int32 class map), ``multi_hot``
(a float32 ``(K,)`` 0/1 label vector) or ``boxes`` (padded boxes and classes).
``prepare(..., target=...)`` asks a source for one kind.

Modules: ``sources/`` (one module per ``data.source`` family and the
dispatch), ``scan`` (Pillow header checks), ``record_scan`` (decoding every
TFRecord/TFDS record once), ``splits`` (stable hash splits), ``transforms``
(pure TF image ops), ``box_ops`` (box-aware ops), ``plan`` (steps, running and
printing a plan), ``augment`` (random ops as steps), ``builder``
(``PreparedData``), ``detection_data`` (``DetectionData``), ``sharding``
(per-worker datasets), ``check`` (``kerasflow data check``), ``preview``
(``kerasflow data preview``), ``synthetic`` (the offline shape sets), ``bmp``
(palette BMP decoding).
"""

from kerasflow.pipelines.builder import PreparedData, build, prepare
from kerasflow.pipelines.detection_data import DetectionData, prepare_detection
from kerasflow.pipelines.plan import Step
from kerasflow.pipelines.sources import TARGETS, SourceData, from_arrays, load_source
from kerasflow.pipelines.transforms import decode_image, decode_mask, preprocess

__all__ = [
    "TARGETS",
    "DetectionData",
    "PreparedData",
    "SourceData",
    "Step",
    "build",
    "decode_image",
    "decode_mask",
    "from_arrays",
    "load_source",
    "prepare",
    "prepare_detection",
    "preprocess",
]
