"""Find a backbone's intermediate feature maps by their output stride.

Segmentation heads (U-Net skips, DeepLab low-level features) need the last
feature map at each resolution of any classification backbone, including
``keras.applications`` ones, without a per-family table of layer names.
"""

from __future__ import annotations

import keras


def feature_maps_by_stride(backbone: keras.Model) -> dict[int, keras.KerasTensor]:
    """The last 4-D output at each power-of-two stride, in topological order.

    Args:
        backbone: a functional model with one input of static height and width.

    Returns:
        ``{stride: tensor}`` for strides 1, 2, 4, ... (stride 1 is the input).
        Globally pooled (1x1) maps are skipped unless the input itself is that
        small, so squeeze-and-excitation branches are never chosen.
    """
    height, width = backbone.inputs[0].shape[1:3]
    if height is None or width is None:
        raise ValueError(
            "Feature extraction needs a static input height and width. "
            f"Received: input shape={tuple(backbone.inputs[0].shape)}"
        )
    found: dict[int, keras.KerasTensor] = {1: backbone.inputs[0]}
    for layer in backbone.layers:
        for node in layer._inbound_nodes:
            for tensor in node.output_tensors:
                shape = tensor.shape
                if len(shape) != 4 or shape[1] is None or shape[2] is None:
                    continue
                if height % shape[1] or width % shape[2]:
                    continue
                stride = height // shape[1]
                if stride != width // shape[2] or stride & (stride - 1):
                    continue
                if shape[1] == 1 and shape[2] == 1 and tensor is not backbone.outputs[0]:
                    continue
                found[stride] = tensor
    return dict(sorted(found.items()))
