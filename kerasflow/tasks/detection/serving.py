"""A detector's serving signatures and JSON predictions.

Each signature returns ``boxes`` ``[N, D, 4]`` float32 ``[ymin, xmin, ymax,
xmax]`` in pixels of each *input* image (the letterbox of ``data.resize: pad``
is undone in the graph), ``scores`` ``[N, D]``, ``class_ids`` ``[N, D]`` int32
(``-1`` in unused rows), ``class_names`` ``[N, D]`` string (``""`` there) and
``num_detections`` ``[N]`` int32. ``predict_tensor`` takes the model's own
input: letterboxed 0..255 pixels.
"""

from __future__ import annotations

from kerasflow.tasks.base import image_signatures

BOX_FORMAT = "[ymin, xmin, ymax, xmax] pixels of the input image"


def detection_functions(model, data_config, class_names: list[str], **decode_kwargs) -> dict:
    """The signature functions and input specs of a detector.

    Args:
        model: the detector's trainable model (heads out) or its inference model.
        data_config: the run's :class:`~kerasflow.config.DataConfig`.
        class_names: one name per class.
        **decode_kwargs: :class:`~kerasflow.models.detector.CenterNetDecode` options.
    """
    import tensorflow as tf

    from kerasflow.models.detector import inference_model
    from kerasflow.pipelines import box_ops

    decoded = isinstance(model.outputs[0], dict) or len(model.outputs) > 1
    detect = model if decoded else inference_model(model, **decode_kwargs)
    height, width = (int(v) for v in data_config.image_size)
    mode = "pad" if data_config.resize == "pad" else "stretch"
    names = tf.constant([str(c) for c in class_names], tf.string)

    def prepare(image):
        hw = tf.cast(tf.shape(image)[:2], tf.float32)
        resized, _, window = box_ops.letterbox(
            image,
            tf.zeros([0, 4]),
            (height, width),
            mode,
            interpolation=data_config.interpolation,
            antialias=data_config.antialias,
        )
        return resized, window, hw

    def outputs(x, windows, hws):
        out = detect(x, training=False)
        boxes = box_ops.unletterbox(out["boxes"], windows, hws)
        classes = tf.cast(out["classes"], tf.int32)
        valid = classes >= 0
        return {
            "boxes": tf.where(valid[..., None], boxes, 0.0),
            "scores": tf.where(valid, out["scores"], 0.0),
            "class_ids": classes,
            "class_names": tf.where(valid, tf.gather(names, tf.maximum(classes, 0)), ""),
            "num_detections": out["num_detections"],
        }

    def whole_input(inputs):
        n = tf.shape(inputs)[0]
        windows = tf.tile(tf.constant([[0.0, 0.0, 1.0, 1.0]]), [n, 1])
        hws = tf.tile(tf.constant([[float(height), float(width)]]), [n, 1])
        return windows, hws

    return image_signatures(
        data_config,
        outputs,
        prepare_one=prepare,
        extra_spec=(tf.TensorSpec([4], tf.float32), tf.TensorSpec([2], tf.float32)),
        tensor_extras=whole_input,
    )


def json_predictions(outputs, contract: dict | None = None) -> list[dict]:
    """Signature outputs -> one JSON-ready dict per image (unused rows dropped).

    The same answer as a LiteRT/ONNX artefact's (:func:`kerasflow.tasks.predictions.detection`).
    """
    from kerasflow.tasks.predictions import detection

    return detection(outputs, contract or {})
