"""Tiny, fast-to-train params for every registered model name (used by the smoke tests)."""

SMALL_RESNET = {"width_multiplier": 0.125}

TINY: dict[str, tuple[tuple[int, int, int], dict]] = {
    "simple_cnn": ((32, 32, 1), {"width": 4, "dense_units": 8}),
    "alexnet": ((64, 64, 3), {"width_multiplier": 0.0625, "fc_units": 16}),
    "nin": ((32, 32, 1), {"width_multiplier": 0.0625}),
    "googlenet": ((32, 32, 3), {"width_multiplier": 0.125}),
    "mobilenet_v1": ((32, 32, 3), {"alpha": 0.125}),
    "mobilenet_v2": ((32, 32, 1), {"alpha": 0.1, "se_reduction": 4}),
    "keras_app": ((32, 32, 3), {"application": "MobileNetV2", "alpha": 0.35}),
    "unet": ((32, 32, 1), {"depth": 2, "width": 4}),
    "deeplab": (
        (32, 32, 3),
        {
            "backbone": "resnet18",
            "backbone_params": SMALL_RESNET,
            "aspp_filters": 8,
            "low_level_filters": 4,
            "decoder_filters": 8,
        },
    ),
}
for _d in (11, 13, 16, 19):
    TINY[f"vgg{_d}"] = ((32, 32, 3), {"width_multiplier": 0.0625, "fc_units": 16})
for _d in (18, 34, 50, 101, 152):
    for _prefix, _suffix in (("resnet", ""), ("resnet", "_v2"), ("se_resnet", "")):
        TINY[f"{_prefix}{_d}{_suffix}"] = ((32, 32, 3), dict(SMALL_RESNET))
for _d in (121, 169, 201):
    TINY[f"densenet{_d}"] = ((32, 32, 3), {"width_multiplier": 0.125})


def tiny(name: str):
    """``(input_shape, params)`` of a tiny variant of ``name``."""
    return TINY[name]
