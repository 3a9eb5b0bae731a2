"""Model zoo: functional Keras models by registry name.

``build(name, input_shape, num_classes, **params)`` returns an uncompiled model;
``names()`` lists the registered names.

Example:
    >>> from kerasflow import models
    >>> model = models.build("resnet18", (64, 64, 3), 10, width_multiplier=0.25)
"""

from kerasflow.models.registry import build, get_spec, names, register

_M = "kerasflow.models"
_SEG = "segmentation"

register("simple_cnn", f"{_M}.simple_cnn:simple_cnn")
register("alexnet", f"{_M}.alexnet:alexnet")
for _depth in (11, 13, 16, 19):
    register(f"vgg{_depth}", f"{_M}.vgg:vgg", depth=_depth)
register("nin", f"{_M}.nin:nin")
register("googlenet", f"{_M}.googlenet:googlenet")
for _depth in (18, 34, 50, 101, 152):
    register(f"resnet{_depth}", f"{_M}.resnet:resnet", depth=_depth, version=1)
    register(f"resnet{_depth}_v2", f"{_M}.resnet:resnet", depth=_depth, version=2)
    register(f"se_resnet{_depth}", f"{_M}.resnet:resnet", depth=_depth, version=1, se_reduction=16)
for _depth in (121, 169, 201):
    register(f"densenet{_depth}", f"{_M}.densenet:densenet", depth=_depth)
register("mobilenet_v1", f"{_M}.mobilenet:mobilenet_v1")
register("mobilenet_v2", f"{_M}.mobilenet:mobilenet_v2")
register("keras_app", f"{_M}.keras_app:keras_app")
register("unet", f"{_M}.unet:unet", kind=_SEG)
register("deeplab", f"{_M}.deeplab:deeplab", kind=_SEG)
register("centernet", f"{_M}.detector:centernet", kind="detection")

__all__ = ["build", "get_spec", "names", "register"]
