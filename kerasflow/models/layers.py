"""Building blocks shared by the model families.

Helpers here take a tensor and a position-derived ``name`` prefix and return a
tensor, so that every layer name in a model follows from where it sits
(``f"{name}_stage2_block3_conv2"``). The one custom layer, :class:`ResizeLike`,
is registered serializable so models load with ``safe_mode=True``.
"""

from __future__ import annotations

import contextlib
import contextvars

import keras
from keras import layers, ops

POOLINGS = ("avg", "max", "flatten", None)

# (scale, offset) per channel of the model's first layer, set by
# ``registry.build(..., input_scaling=...)`` for the families it builds
# (and the encoders they build in turn).
_INPUT_SCALING: contextvars.ContextVar = contextvars.ContextVar("input_scaling", default=None)
# The activation of the probabilities layer: softmax (one class per image or
# pixel) or sigmoid (independent labels), set by ``registry.build(..., output_activation=...)``.
_OUTPUT_ACTIVATION: contextvars.ContextVar = contextvars.ContextVar(
    "output_activation", default="softmax"
)
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")

# Momentum of every BatchNormalization's moving mean and variance, the default of
# each family's ``bn_momentum``. Evaluation and serving use the moving statistics;
# with momentum m they still carry m**steps of their start. Keras' 0.99 needs ~460
# steps to get within 1% of the data's statistics, which also move while the
# weights train. Measured (a 32x32 class-per-folder copy of the 1,797 digits,
# simple_cnn width 32 depth 2, 10 epochs = 200 steps of batch 64, seed 42): with
# 0.99 (dropout 0.3) training accuracy reached 0.98 but validation stayed at 0.114
# and test at 0.098, chance; with 0.9 test 0.940 (dropout 0.3) and 0.986 (dropout
# 0). Long runs settle to the same statistics either way.
BN_MOMENTUM = 0.9


@contextlib.contextmanager
def input_scaling(scale_offset):
    """Within the block, :func:`model_input` puts ``Rescaling(scale, offset)`` first."""
    token = _INPUT_SCALING.set(scale_offset)
    try:
        yield
    finally:
        _INPUT_SCALING.reset(token)


@contextlib.contextmanager
def output_activation(kind: str):
    """Within the block, :func:`probabilities` ends models with ``kind`` (softmax or sigmoid)."""
    if kind not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {OUTPUT_ACTIVATIONS}. Received: {kind!r}"
        )
    token = _OUTPUT_ACTIVATION.set(kind)
    try:
        yield
    finally:
        _OUTPUT_ACTIVATION.reset(token)


def model_input(input_shape, name: str):
    """A model's input and the tensor its first block takes.

    ``keras.Input(input_shape, name=f"{name}_input")``, followed by a
    ``Rescaling`` layer ``f"{name}_scaling"`` when the model is built under
    :func:`input_scaling` (kerasflow pipelines hand models uint8 pixels and
    the model applies ``data.normalize``). Returns ``(inputs, x)``.
    """
    inputs = keras.Input(shape=tuple(input_shape), name=f"{name}_input")
    scaling = _INPUT_SCALING.get()
    if scaling is None:
        return inputs, inputs
    scale, offset = scaling
    return inputs, layers.Rescaling(list(scale), list(offset), name=f"{name}_scaling")(inputs)


def regularizer(weight_decay: float):
    """An L2 kernel regularizer for ``weight_decay`` (``None`` when it is 0)."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0. Received: weight_decay={weight_decay}")
    return keras.regularizers.L2(weight_decay) if weight_decay else None


def scaled(filters: int, width_multiplier: float, minimum: int = 1) -> int:
    """``filters`` scaled by ``width_multiplier``, rounded, never below ``minimum``."""
    return max(minimum, int(round(filters * width_multiplier)))


def check_positive(**values) -> None:
    """Raise ``ValueError`` naming the first argument that is not > 0."""
    for key, value in values.items():
        if value is None or value <= 0:
            raise ValueError(f"{key} must be > 0. Received: {key}={value}")


def check_output_stride(output_stride: int) -> None:
    """Raise ``ValueError`` unless ``output_stride`` is 8, 16 or 32."""
    if output_stride not in (8, 16, 32):
        raise ValueError(
            f"output_stride must be 8, 16 or 32. Received: output_stride={output_stride}"
        )


def check_input_shape(input_shape, min_size: int = 1) -> tuple:
    """Validate ``(height, width, channels)``; ``None`` height/width allowed."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels). Received: input_shape={shape}"
        )
    for size in shape[:2]:
        if size is not None and size < min_size:
            raise ValueError(
                f"Height and width must be at least {min_size} for this model. "
                f"Received: input_shape={shape}"
            )
    if shape[2] is None or shape[2] < 1:
        raise ValueError(f"Channels must be >= 1. Received: input_shape={shape}")
    return shape


class StrideSchedule:
    """Turns strides into dilation once the feature map reaches ``output_stride``.

    Families call :meth:`resolve` for every block in order; blocks past the
    target resolution get stride 1 and a growing dilation rate (atrous
    convolution), so the receptive field grows as if they still strided.
    """

    def __init__(self, output_stride: int, current: int):
        self.output_stride = output_stride
        self.current = current
        self.dilation = 1

    def resolve(self, stride: int) -> tuple[int, int]:
        """(stride, dilation) for a block that would downsample by ``stride``."""
        dilation = self.dilation
        if stride > 1 and self.current * stride > self.output_stride:
            self.dilation *= stride
            return 1, dilation
        self.current *= stride
        return stride, dilation


def batch_norm(x, name: str, momentum: float = BN_MOMENTUM, epsilon: float = 1e-3):
    """Batch normalisation over the channel axis."""
    return layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)(x)


def activation(x, kind: str, name: str):
    """``relu``, ``relu6``, ``sigmoid``, ... as a named layer (ReLU6 as ``ReLU(6)``)."""
    if kind == "relu6":
        return layers.ReLU(6.0, name=name)(x)
    return layers.Activation(kind, name=name)(x)


def conv_bn_act(
    x,
    filters: int,
    kernel_size,
    name: str,
    strides=1,
    dilation_rate=1,
    act: str | None = "relu",
    use_bias: bool = False,
    reg=None,
    bn: bool = True,
    bn_momentum: float = BN_MOMENTUM,
    bn_epsilon: float = 1e-3,
    padding: str = "same",
):
    """Conv2D, then (optionally) batch norm, then (optionally) an activation.

    Layers are named ``{name}_conv``, ``{name}_bn`` and ``{name}_{act}``.
    """
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        use_bias=use_bias,
        kernel_regularizer=reg,
        name=f"{name}_conv",
    )(x)
    if bn:
        x = batch_norm(x, f"{name}_bn", bn_momentum, bn_epsilon)
    if act:
        x = activation(x, act, f"{name}_{act}")
    return x


def depthwise_bn_act(
    x,
    name: str,
    kernel_size=3,
    strides=1,
    dilation_rate=1,
    depth_multiplier: int = 1,
    act: str | None = "relu6",
    reg=None,
    bn_momentum: float = BN_MOMENTUM,
    bn_epsilon: float = 1e-3,
):
    """DepthwiseConv2D (no bias), batch norm, activation."""
    x = layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding="same",
        depth_multiplier=depth_multiplier,
        dilation_rate=dilation_rate,
        use_bias=False,
        depthwise_regularizer=reg,
        name=f"{name}_dwconv",
    )(x)
    x = batch_norm(x, f"{name}_dwbn", bn_momentum, bn_epsilon)
    if act:
        x = activation(x, act, f"{name}_dw{act}")
    return x


def squeeze_excite(x, name: str, reduction: int = 16, reg=None, min_units: int = 1):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from global context.

    Global average pool, a bottleneck of ``channels // reduction`` ReLU units, a
    sigmoid gate per channel, then channel-wise rescaling of ``x``. Usable in any
    family: it only needs a 4-D feature map.
    """
    check_positive(reduction=reduction)
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = layers.Dense(
        max(min_units, channels // reduction),
        activation="relu",
        kernel_regularizer=reg,
        name=f"{name}_se_reduce",
    )(s)
    s = layers.Dense(
        channels, activation="sigmoid", kernel_regularizer=reg, name=f"{name}_se_expand"
    )(s)
    return layers.Multiply(name=f"{name}_se_scale")([x, s])


def classifier_head(
    x,
    num_classes: int,
    name: str,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    reg=None,
    hidden_units=(),
    hidden_dropout: float = 0.0,
):
    """Pool, optional hidden dense layers, dropout, dense and a float32 softmax.

    With ``include_top=False`` returns the pooled features (or the feature map
    itself when ``pooling`` is ``None``).

    Args:
        pooling: ``avg``, ``max``, ``flatten`` or ``None``.
        hidden_units: sizes of ReLU dense layers before the classifier (VGG, AlexNet).
        hidden_dropout: dropout after each hidden dense layer.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if not 0 <= dropout < 1 or not 0 <= hidden_dropout < 1:
        raise ValueError(
            f"dropout must be in [0, 1). Received: dropout={dropout}, "
            f"hidden_dropout={hidden_dropout}"
        )
    if pooling is None:
        if include_top:
            raise ValueError(
                "include_top=True needs a pooling (avg, max or flatten). Received: pooling=None"
            )
        return x
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name=f"{name}_avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name=f"{name}_max_pool")(x)
    else:
        x = layers.Flatten(name=f"{name}_flatten")(x)
    if not include_top:
        return x
    check_positive(num_classes=num_classes)
    for i, units in enumerate(hidden_units, start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"{name}_fc{i}")(x)
        if hidden_dropout:
            x = layers.Dropout(hidden_dropout, name=f"{name}_fc{i}_dropout")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = layers.Dense(num_classes, kernel_regularizer=reg, name=f"{name}_logits")(x)
    return probabilities(x, name)


def probabilities(x, name: str):
    """The float32 softmax (or, under :func:`output_activation`, sigmoid) every model ends with.

    Grad-CAM and serving rely on the layer's name ``f"{name}_probabilities"``.
    """
    kind = _OUTPUT_ACTIVATION.get()
    return layers.Activation(kind, dtype="float32", name=f"{name}_probabilities")(x)


@keras.saving.register_keras_serializable(package="kerasflow")
class ResizeLike(layers.Layer):
    """Resize a feature map to the height and width of a reference tensor.

    Called as ``ResizeLike()([x, reference])``. Unlike ``UpSampling2D`` it handles sizes
    that are not an integer multiple of each other (odd input sizes). Height and
    width must be known when the model is built.

    Args:
        interpolation: ``bilinear`` or ``nearest``.
    """

    def __init__(self, interpolation: str = "bilinear", **kwargs):
        super().__init__(**kwargs)
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(
                "interpolation must be bilinear or nearest. "
                f"Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation

    def build(self, input_shapes):
        _, ref_shape = input_shapes
        if ref_shape[1] is None or ref_shape[2] is None:
            raise ValueError(
                "ResizeLike needs a reference with a known height and width. "
                f"Received: reference shape={tuple(ref_shape)}"
            )
        self.built = True

    def call(self, inputs):
        x, reference = inputs
        size = (reference.shape[1], reference.shape[2])
        if (x.shape[1], x.shape[2]) == size:
            return x
        out = ops.image.resize(x, size, interpolation=self.interpolation)
        return ops.cast(out, x.dtype)

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"interpolation": self.interpolation})
        return config
