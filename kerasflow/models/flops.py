"""Multiply-accumulate (MAC) counts computed from a model's graph.

Only the layers that dominate compute are counted: convolutions (plain,
depthwise, separable, transposed) and dense layers, at the shapes they were
called with. Batch norm, activations, pooling, additions and resizing are
ignored, as in the papers' tables. Training FLOPs are about ``3 x 2 x MACs``.

Example:
    >>> from kerasflow import models
    >>> from kerasflow.models.flops import count_macs
    >>> count_macs(models.build("vgg16", (224, 224, 3), 1000))  # ~15.5e9
"""

from __future__ import annotations

import math

import keras
from keras import layers


def _spatial(shape, layer) -> int:
    dims = shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(
            f"count_macs needs static spatial sizes; layer {layer.name!r} has an unknown "
            f"size. Build the model with a fixed input_shape. Received: shape={tuple(shape)}"
        )
    return math.prod(dims)


def _layer_macs(layer, input_shape, output_shape) -> int:
    if isinstance(layer, layers.DepthwiseConv2D | layers.DepthwiseConv1D):
        kernel = math.prod(layer.kernel_size)
        return _spatial(output_shape, layer) * output_shape[-1] * kernel
    if isinstance(layer, layers.SeparableConv2D | layers.SeparableConv1D):
        kernel = math.prod(layer.kernel_size)
        depth_out = input_shape[-1] * layer.depth_multiplier
        out_pixels = _spatial(output_shape, layer)
        return out_pixels * depth_out * kernel + out_pixels * depth_out * output_shape[-1]
    if isinstance(layer, layers.Conv2DTranspose | layers.Conv1DTranspose | layers.Conv3DTranspose):
        kernel = math.prod(layer.kernel_size)
        return _spatial(input_shape, layer) * input_shape[-1] * kernel * output_shape[-1]
    if isinstance(layer, layers.Conv1D | layers.Conv2D | layers.Conv3D):
        kernel = math.prod(layer.kernel_size)
        in_per_group = input_shape[-1] // layer.groups
        return _spatial(output_shape, layer) * output_shape[-1] * kernel * in_per_group
    if isinstance(layer, layers.Dense):
        leading = math.prod(d for d in output_shape[1:-1]) if len(output_shape) > 2 else 1
        return leading * input_shape[-1] * output_shape[-1]
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass for one example.

    Walks every call of every layer (nested models included), so a layer used
    twice counts twice.

    Args:
        model: a built Keras model with static input height and width.

    Returns:
        The MAC count as an integer.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        for node in layer._inbound_nodes:
            if not node.input_tensors or not node.output_tensors:
                continue
            total += _layer_macs(
                layer,
                tuple(node.input_tensors[0].shape),
                tuple(node.output_tensors[0].shape),
            )
    return int(total)
