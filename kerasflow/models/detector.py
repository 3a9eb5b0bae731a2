"""CenterNet-style single-stage detector on any zoo backbone, with a feature pyramid.

Why CenterNet (objects as points, Zhou et al. 2019) and not anchors
(RetinaNet) or FCOS:

* No anchors to tune: an object is the peak of its class heatmap at one
  output cell plus a 2-D size and a sub-cell offset. RetinaNet needs anchor
  scales and ratios matched to the data and an IoU-based assignment per
  anchor; with small datasets and small images this is the part most often
  mis-set.
* Targets are dense tensors of one fixed shape ``(H/s, W/s, K + 5)``, drawn
  once per example inside the tf.data map, so training is a plain
  ``model.fit`` with one output and one loss (no per-level target assignment
  as in FCOS or RetinaNet, no custom ``train_step``).
* Decoding is a 3x3 max-pool "peak" test and a top-k, cheap on CPU; the
  peaks are few, so ``tf.image.combined_non_max_suppression`` afterwards only
  removes the rare duplicate of two neighbouring peaks.

The feature pyramid is the FPN top-down path (Lin et al. 2017): backbone
maps at strides ``output_stride``..32 get 1x1 lateral convolutions, the coarser
level is upsampled and added, and a 3x3 convolution smooths each sum; the
heads read the finest level (stride 4 by default), which carries the deep
levels' semantics at a resolution fine enough for small objects.

The trainable model outputs one float32 tensor ``(N, H/s, W/s, K + 4)``:
``K`` heatmap logits, then ``[offset_y, offset_x, height, width]`` in output
cells. :func:`inference_model` appends :class:`CenterNetDecode`, which returns
boxes (``[ymin, xmin, ymax, xmax]`` fractions of the input), scores, classes
and the number of valid detections, all inside the graph.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from kerasflow.models.features import feature_maps_by_stride
from kerasflow.models.layers import (
    BN_MOMENTUM,
    ResizeLike,
    check_input_shape,
    check_positive,
    conv_bn_act,
    regularizer,
)

HEAD_EXTRA = 4  # offset_y, offset_x, height, width
DEFAULT_TOP_K = 100  # heatmap peaks taken before NMS


def centernet(
    input_shape,
    num_classes: int,
    name: str = "centernet",
    backbone: str = "resnet18",
    backbone_params: dict | None = None,
    output_stride: int = 4,
    top_stride: int = 32,
    neck_filters: int = 64,
    head_filters: int = 64,
    prior: float = 0.1,
    weight_decay: float = 0.0,
    bn_momentum: float = BN_MOMENTUM,
):
    """CenterNet detector: backbone -> FPN top-down neck -> heatmap and box heads.

    Args:
        backbone: any registered classification model name (``resnet18``,
            ``mobilenet_v2``, ...), built with ``include_top=False``.
        backbone_params: its extra params (``width_multiplier``, ``alpha``...).
        output_stride: stride of the heads' map (4 or 8; the finest FPN level).
        top_stride: the coarsest backbone level fed to the pyramid (16 or 32).
        neck_filters: channels of every pyramid level.
        head_filters: channels of the heads' hidden 3x3 convolution.
        prior: initial heatmap probability (sets the heatmap bias, as in focal loss).
        weight_decay: L2 factor on kernels (neck and heads).
        bn_momentum: batch-norm momentum of the neck.
    """
    check_positive(num_classes=num_classes, neck_filters=neck_filters, head_filters=head_filters)
    if (
        output_stride not in (2, 4, 8, 16)
        or top_stride not in (8, 16, 32, 64)
        or top_stride < output_stride
    ):
        raise ValueError(
            "output_stride must be 2, 4, 8 or 16 and top_stride 8..64 and >= output_stride. "
            f"Received: output_stride={output_stride}, top_stride={top_stride}"
        )
    if not 0 < prior < 1:
        raise ValueError(f"prior must be in (0, 1). Received: prior={prior}")
    input_shape = check_input_shape(input_shape)
    height, width = input_shape[:2]
    if height is None or width is None or height % top_stride or width % top_stride:
        raise ValueError(
            f"centernet needs a static input height and width divisible by top_stride "
            f"({top_stride}). Received: input_shape={input_shape}"
        )
    from kerasflow.models.registry import build, get_spec

    if get_spec(backbone).kind != "classification":
        raise ValueError(
            f"backbone must be a classification model name. Received: backbone={backbone!r}"
        )
    params = {**(backbone_params or {}), "include_top": False, "pooling": None}
    base = build(backbone, input_shape, 1, model_name=f"{name}_backbone", **params)
    inputs = base.inputs[0]
    maps = feature_maps_by_stride(base)
    levels = [s for s in sorted(maps) if output_stride <= s <= top_stride]
    if not levels or levels[0] != output_stride:
        raise ValueError(
            f"Backbone {backbone!r} has no stride-{output_stride} feature map. "
            f"Received: strides={sorted(maps)}"
        )
    reg = regularizer(weight_decay)
    conv_kw = {"reg": reg, "bn_momentum": bn_momentum}
    # FPN top-down: start at the coarsest level, upsample, add the lateral, smooth.
    x = None
    for stride in reversed(levels):
        lateral = layers.Conv2D(
            neck_filters, 1, kernel_regularizer=reg, name=f"{name}_fpn_lateral{stride}"
        )(maps[stride])
        if x is not None:
            up = ResizeLike("nearest", name=f"{name}_fpn_up{stride}")([x, lateral])
            lateral = layers.Add(name=f"{name}_fpn_add{stride}")([up, lateral])
        x = conv_bn_act(lateral, neck_filters, 3, f"{name}_fpn_smooth{stride}", **conv_kw)

    def head(x, channels, kind, bias):
        h = layers.Conv2D(
            head_filters, 3, padding="same", activation="relu", kernel_regularizer=reg,
            name=f"{name}_{kind}_conv",
        )(x)  # fmt: skip
        return layers.Conv2D(
            channels, 1, kernel_regularizer=reg, bias_initializer=bias, name=f"{name}_{kind}_out"
        )(h)

    heat_bias = keras.initializers.Constant(-math.log((1 - prior) / prior))
    heat = head(x, num_classes, "heatmap", heat_bias)
    box = head(x, HEAD_EXTRA, "box", "zeros")
    out = layers.Concatenate(name=f"{name}_head_concat")([heat, box])
    out = layers.Activation("linear", dtype="float32", name=f"{name}_head")(out)
    return keras.Model(inputs, out, name=name)


@keras.saving.register_keras_serializable(package="kerasflow")
class CenterNetDecode(layers.Layer):
    """Heads -> detections, in the graph: sigmoid, 3x3 peak test, top-k, class-wise NMS.

    Input: the detector's ``(N, h, w, K + 4)`` output. Outputs a dict:
    ``boxes`` ``(N, D, 4)`` ``[ymin, xmin, ymax, xmax]`` fractions of the
    input image, ``scores`` ``(N, D)``, ``classes`` ``(N, D)`` int32 (``-1``
    in unused rows) and ``num_detections`` ``(N,)`` int32, ``D =
    max_detections``.

    Args:
        num_classes: ``K``.
        max_detections: ``D``, detections kept per image.
        top_k: peaks taken from the heatmaps before NMS.
        score_threshold: peaks below it are dropped.
        iou_threshold: NMS overlap of same-class boxes.
    """

    def __init__(
        self,
        num_classes: int,
        max_detections: int = 100,
        top_k: int = DEFAULT_TOP_K,
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive(num_classes=num_classes, max_detections=max_detections, top_k=top_k)
        if not 0 <= score_threshold < 1 or not 0 < iou_threshold <= 1:
            raise ValueError(
                "score_threshold must be in [0, 1) and iou_threshold in (0, 1]. "
                f"Received: score_threshold={score_threshold}, iou_threshold={iou_threshold}"
            )
        self.num_classes = int(num_classes)
        self.max_detections = int(max_detections)
        self.top_k = int(top_k)
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)

    def call(self, head):
        import tensorflow as tf

        k = self.num_classes
        _, boxes, scores, classes = decode_peaks(head, k, self.top_k)
        class_scores = tf.one_hot(classes, k) * scores[..., None]
        nms = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :],
            class_scores,
            max_output_size_per_class=self.max_detections,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            clip_boxes=False,
        )
        valid = tf.range(self.max_detections)[None, :] < nms.valid_detections[:, None]
        out_classes = tf.where(valid, tf.cast(nms.nmsed_classes, tf.int32), -1)
        return {
            "boxes": nms.nmsed_boxes,
            "scores": nms.nmsed_scores,
            "classes": out_classes,
            "num_detections": tf.cast(nms.valid_detections, tf.int32),
        }

    def compute_output_spec(self, head):
        n = head.shape[0]
        d = self.max_detections
        return {
            "boxes": keras.KerasTensor((n, d, 4), "float32"),
            "scores": keras.KerasTensor((n, d), "float32"),
            "classes": keras.KerasTensor((n, d), "int32"),
            "num_detections": keras.KerasTensor((n,), "int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            max_detections=self.max_detections,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
        )
        return config


def decode_peaks(head, num_classes: int, top_k: int = DEFAULT_TOP_K):
    """The heatmap peaks of CenterNet heads, before any score threshold or NMS.

    Sigmoid of the heatmap logits, the 3x3 max-pool peak test (a cell is kept
    where it equals the maximum of its neighbourhood), top-k over the flattened
    ``(cell, class)`` scores, and the offsets and sizes gathered at those cells.
    Builtin LiteRT/ONNX ops only (MAX_POOL_2D, TOPK_V2, GATHER); static shapes
    are used where the head has them, so the outputs of a converted model are too.

    Args:
        head: the detector's ``(N, h, w, K + 4)`` output.
        num_classes: ``K``.
        top_k: peaks kept per image (at most ``h * w * K``).

    Returns:
        ``(heatmap, boxes, scores, classes)``: the heatmap probabilities ``(N, h, w,
        K)``; ``boxes`` ``(N, top_k, 4)`` ``[ymin, xmin, ymax, xmax]`` fractions of the
        input, clipped to ``[0, 1]``; ``scores`` ``(N, top_k)`` in descending order;
        ``classes`` ``(N, top_k)`` int32.
    """
    import tensorflow as tf

    k = int(num_classes)
    head = tf.cast(head, tf.float32)
    heat = tf.sigmoid(head[..., :k])
    reg = head[..., k : k + HEAD_EXTRA]
    shape = tf.shape(head)
    n = shape[0]
    h = head.shape[1] if head.shape[1] is not None else shape[1]
    w = head.shape[2] if head.shape[2] is not None else shape[2]
    peaks = tf.nn.max_pool2d(heat, 3, 1, "SAME")
    kept = heat * tf.cast(tf.equal(heat, peaks), tf.float32)
    flat = tf.reshape(kept, [n, -1])
    if isinstance(h, int) and isinstance(w, int):
        count = min(int(top_k), h * w * k)
    else:
        count = tf.minimum(int(top_k), tf.shape(flat)[1])
    scores, index = tf.math.top_k(flat, k=count)
    classes = index % k
    cell = index // k
    cy, cx = cell // w, cell % w
    reg = tf.gather(tf.reshape(reg, [n, -1, HEAD_EXTRA]), cell, batch_dims=1)
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    center_y = (tf.cast(cy, tf.float32) + reg[..., 0]) / hf
    center_x = (tf.cast(cx, tf.float32) + reg[..., 1]) / wf
    half_h = tf.maximum(reg[..., 2], 0.0) / hf / 2
    half_w = tf.maximum(reg[..., 3], 0.0) / wf / 2
    boxes = tf.stack(
        [center_y - half_h, center_x - half_w, center_y + half_h, center_x + half_w], -1
    )
    boxes = tf.clip_by_value(boxes, 0.0, 1.0)
    return heat, boxes, scores, tf.cast(classes, tf.int32)


def num_classes_of(model: keras.Model) -> int:
    """``K`` of a detector built by :func:`centernet`."""
    return int(model.outputs[0].shape[-1]) - HEAD_EXTRA


def inference_model(model: keras.Model, **decode_kwargs) -> keras.Model:
    """The detector with :class:`CenterNetDecode` on top (detections out).

    Example:
        >>> detect = inference_model(model, score_threshold=0.3)
        >>> out = detect(images)  # {"boxes", "scores", "classes", "num_detections"}
    """
    decode = CenterNetDecode(num_classes_of(model), name=f"{model.name}_decode", **decode_kwargs)
    return keras.Model(model.inputs, decode(model.outputs[0]), name=f"{model.name}_inference")
