"""Passthrough to ``keras.applications`` backbones with a kerasflow head.

``build("keras_app", (224, 224, 3), 10, application="EfficientNetB0")`` wraps
the application's feature extractor (its own layer names) with the same float32
softmax head as every other kerasflow model. ImageNet weights need a download
the first time; offline that fails with a :class:`~kerasflow.errors.ModelError`
that says how to fix it.

The applications expect their own input scaling (``keras.applications.<module>
.preprocess_input``); some, such as EfficientNet, include it in the model.
"""

from __future__ import annotations

import keras

from kerasflow.errors import ModelError
from kerasflow.models.layers import (
    check_input_shape,
    classifier_head,
    model_input,
    regularizer,
)


def _available() -> list[str]:
    return sorted(
        n
        for n in dir(keras.applications)
        if n[0].isupper() and callable(getattr(keras.applications, n))
    )


def keras_app(
    input_shape,
    num_classes: int,
    name: str = "keras_app",
    application: str = "ResNet50",
    weights: str | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    weight_decay: float = 0.0,
    trainable_backbone: bool = True,
    **app_kwargs,
):
    """A ``keras.applications`` backbone with a kerasflow classifier head.

    Args:
        application: class name in ``keras.applications`` (``ResNet50``,
            ``MobileNetV3Small``, ``EfficientNetB0``, ...).
        weights: ``None`` (random init), ``"imagenet"`` (downloaded once to
            ``~/.keras/models``) or a path to a weights file.
        include_top: kerasflow classifier head, or the pooled features only.
        pooling: ``avg``, ``max``, ``flatten`` or ``None`` (feature map).
        dropout: dropout before the classifier.
        weight_decay: L2 factor on the head's kernel.
        trainable_backbone: ``False`` freezes the application's layers.
        **app_kwargs: passed to the application (``alpha=0.5``, ...).

    Raises:
        ModelError: unknown application, bad arguments, or weights that could
            not be downloaded.
    """
    input_shape = check_input_shape(input_shape)
    factory = getattr(keras.applications, application, None)
    if factory is None or not application[0].isupper():
        raise ModelError(
            f"Unknown keras.applications model {application!r}. Choose one of: "
            f"{', '.join(_available())}. Received: application={application!r}"
        )
    if weights == "imagenet" and input_shape[2] != 3:
        raise ModelError(
            "ImageNet weights need 3 input channels; use weights=None or convert images "
            f"to RGB. Received: input_shape={input_shape}"
        )
    inputs, x = model_input(input_shape, name)
    try:
        base = factory(
            include_top=False,
            weights=weights,
            input_shape=input_shape,
            input_tensor=x,
            pooling=None,
            **app_kwargs,
        )
    except TypeError as exc:
        raise ModelError(
            f"Bad arguments for keras.applications.{application}: {exc}. "
            f"Received: app_kwargs={app_kwargs}"
        ) from exc
    except ValueError as exc:
        raise ModelError(
            f"keras.applications.{application} rejected the arguments: {exc}. "
            f"Received: input_shape={input_shape}, weights={weights!r}"
        ) from exc
    except Exception as exc:  # keras.utils.get_file raises a bare Exception offline
        if "fetch failure" not in str(exc):
            raise
        raise ModelError(
            f"Could not download the {weights!r} weights for keras.applications.{application} "
            f"({exc}). This machine looks offline: run once where the internet is reachable "
            "so the file is cached in ~/.keras/models, pass a local weights file path, or use "
            f"weights=None. Received: weights={weights!r}"
        ) from exc
    base.trainable = trainable_backbone
    outputs = classifier_head(
        base.output, num_classes, name, include_top, pooling, dropout, regularizer(weight_decay)
    )
    return keras.Model(inputs, outputs, name=name)
