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

from __future__ import annotations

import importlib

# Public name -> the module that holds it. Loaded on first use: the pipelines
# import TensorFlow, and ``scan`` (the serving request checks) must not.
_PUBLIC = {
    "PreparedData": "builder",
    "build": "builder",
    "prepare": "builder",
    "DetectionData": "detection_data",
    "prepare_detection": "detection_data",
    "Step": "plan",
    "TARGETS": "sources",
    "SourceData": "sources",
    "from_arrays": "sources",
    "load_source": "sources",
    "decode_image": "transforms",
    "decode_mask": "transforms",
    "preprocess": "transforms",
}


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"kerasflow.pipelines.{_PUBLIC[name]}"), name)
    try:
        return importlib.import_module(f"kerasflow.pipelines.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"kerasflow.pipelines.{name}":
            raise
        raise AttributeError(f"module 'kerasflow.pipelines' has no attribute {name!r}") from None


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
