"""Random augmentation as plan steps: per-example ops after the shuffle, MixUp/CutMix per batch.

Each op is stateless and takes its own seed, split from a per-example seed that
:func:`seed_steps` attaches (``tf.data`` random, fresh every epoch, the same for
the same ``seed``). Geometric ops move a mask target with the image (nearest
neighbour); class and multi-hot targets pass through them unchanged.
Photometric ops touch only the image.

MixUp and CutMix mix float32 targets: one-hot class targets or multi-hot
label vectors (already 0/1 floats), blended with the same weights as the
pixels. They do not apply to masks.
"""

from __future__ import annotations

import tensorflow as tf

from kerasflow.errors import DataError
from kerasflow.pipelines import transforms as T
from kerasflow.pipelines.plan import Step

GEOMETRIC = {"horizontal_flip", "vertical_flip", "rotation", "zoom", "translation"}
BATCH_OPS = {"mixup", "cutmix"}
# Ops that work on uint8 pixels exactly; the others need 0..1 floats.
DTYPE_FREE = {"horizontal_flip", "vertical_flip"}


def describe_op(op: str, aug) -> str:
    """One augment op and its setting as plan text (``rotation 0.1``, ``horizontal_flip``)."""
    value = getattr(aug, op)
    if op in ("horizontal_flip", "vertical_flip"):
        return op
    if op == "randaugment":
        return f"randaugment num_ops={value.num_ops} magnitude={value.magnitude}"
    return f"{op} {value}"


def apply_op(op: str, aug, image, mask, seed):
    """Apply one random op of ``data.augment`` (``aug``) to a 0..1 image (and its mask).

    Args:
        op: the op's name (a field of :class:`kerasflow.config.AugmentConfig`).
        aug: the ``data.augment`` section (the op's setting).
        image: float ``(H, W, C)`` in 0..1 (uint8 for flips).
        mask: ``(H, W)`` int32 class ids, or None; geometric ops move it (nearest).
        seed: ``[2]`` stateless seed.

    Returns:
        ``(image, mask)``; ``mask`` is None when it was.
    """
    if op == "horizontal_flip":
        return T.flip(image, mask, seed, horizontal=True)
    if op == "vertical_flip":
        return T.flip(image, mask, seed, horizontal=False)
    if op == "rotation":
        return T.random_rotation(image, mask, seed, aug.rotation)
    if op == "zoom":
        return T.random_zoom(image, mask, seed, aug.zoom)
    if op == "translation":
        return T.random_translation(image, mask, seed, aug.translation)
    if op == "brightness":
        return T.random_brightness(image, seed, aug.brightness), mask
    if op == "contrast":
        return T.random_contrast(image, seed, aug.contrast), mask
    if op == "saturation":
        return T.random_saturation(image, seed, aug.saturation), mask
    if op == "hue":
        return T.random_hue(image, seed, aug.hue), mask
    if op == "random_erasing":
        return T.random_erasing(image, seed, aug.random_erasing), mask
    if op == "randaugment":
        r = aug.randaugment
        return T.randaugment(image, seed, r.num_ops, r.magnitude), mask
    raise ValueError(f"Unknown augment op. Received: op={op!r}")


def _with_seeds(seed: int):
    """``Dataset -> Dataset`` zipping each element with a fresh ``[2]`` seed."""

    def attach(ds):
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        return tf.data.Dataset.zip((ds, seeds))

    return attach


def seed_steps(seed: int) -> list[Step]:
    """Attach a per-example seed to ``(image, target)``: elements become ``(image, target, seed)``."""
    return [
        Step(
            "augment",
            f"attach a per-example seed (tf.data random, seed {seed}, fresh every epoch)",
            dataset_fn=_with_seeds(seed),
        ),
        Step(
            "augment",
            "(flatten)",
            element_fn=lambda e: (e[0][0], e[0][1], e[1]),
            internal=True,
        ),
    ]


def augment_steps(
    data_config,
    ops: list[str],
    rrc=None,
    *,
    has_mask: bool = False,
    files: bool = False,
    formats: frozenset[str] | None = None,
) -> list[Step]:
    """The per-example random steps on ``(image, target, seed)`` elements (see :func:`seed_steps`).

    Args:
        data_config: the ``data:`` section (image size, channels, augment settings).
        ops: enabled element ops in order (not ``random_resized_crop``, not batch ops).
        rrc: the ``random_resized_crop`` setting, or None.
        has_mask: targets are masks, moved by geometric ops and the crop.
        files: elements still hold encoded bytes (the crop decodes them).
        formats: the scanned image formats (picks the decoder).

    Returns:
        Steps ending with ``(image, target)`` elements (the seed dropped).

    Raises:
        DataError: ``randaugment`` with mask targets.
    """
    cfg, aug = data_config, data_config.augment
    size = tuple(cfg.image_size)
    steps: list[Step] = []
    if rrc is not None:
        scale, ratio = tuple(rrc.scale), tuple(rrc.ratio)

        def crop(e):
            image, target, s = e
            s = T.split_seed(s, 2)[1]
            if files and not has_mask:
                image = T.decode_random_crop(image, cfg.channels, s, size, scale, ratio, formats)
                return image, target, e[2]
            if files:
                image = T.decode_image(image, cfg.channels, formats)
                target = T.decode_mask(target)
            image = T.to_channels(image, cfg.channels)
            image, mask = T.random_resized_crop(
                image, target if has_mask else None, s, size, scale, ratio
            )
            return image, (mask if has_mask else target), e[2]

        how = "decode_and_crop_jpeg (JPEG), " if files and not has_mask else ""
        steps.append(
            Step(
                "augment",
                f"random_resized_crop scale={scale} ratio=({ratio[0]:.3g}, {ratio[1]:.3g}): "
                f"{how}resize to {size}",
                element_fn=crop,
            )
        )
    if has_mask and "randaugment" in ops:
        raise DataError(
            "data.augment.randaugment is for class and multi-label targets; for segmentation "
            "list the geometric and photometric ops explicitly (they move the mask with the "
            "image)."
        )
    needs_float = any(o not in DTYPE_FREE for o in ops)
    funcs = [(op, k) for k, op in enumerate(ops)]
    descr = [describe_op(op, aug) for op in ops]

    def augment(e):
        image, target, s = e
        seeds = T.split_seed(s, len(funcs) + 3)
        mask = target if has_mask else None
        if needs_float:
            image = T.to_unit(image)
        for op, k in funcs:
            image, mask = apply_op(op, aug, image, mask, seeds[k + 3])
        if needs_float:
            image = T.from_unit(image)
        return image, (mask if has_mask else target)

    if funcs:
        what = "image and mask" if has_mask else "image"
        kind = "in 0..1 float, then float32 0..255" if needs_float else "uint8"
        steps.append(Step("augment", f"{'; '.join(descr)} ({what}, {kind})", element_fn=augment))
    else:
        steps.append(
            Step("augment", "(drop seed)", element_fn=lambda e: (e[0], e[1]), internal=True)
        )
    return steps


def batch_op_steps(data_config, seed: int, ops: list[str]) -> list[Step]:
    """MixUp/CutMix on float32 0..255 batches with float32 ``(B, K)`` targets.

    Targets are one-hot class vectors or multi-hot label vectors; both are
    mixed with the pixels' weights. Both ops are convex combinations, so mixing
    pixels and then scaling them in the model equals mixing scaled images.
    """
    if not ops:
        return []
    aug = data_config.augment
    mix, cut = aug.mixup, aug.cutmix

    def mixing(e):
        (images, targets), s = e
        images = tf.cast(images, tf.float32)
        targets = tf.cast(targets, tf.float32)
        s = T.split_seed(s, 3)
        if mix and cut:
            return tf.cond(
                T.uniform(s[2]) < 0.5,
                lambda: T.mixup(images, targets, s[0], mix),
                lambda: T.cutmix(images, targets, s[1], cut),
            )
        if mix:
            return T.mixup(images, targets, s[0], mix)
        return T.cutmix(images, targets, s[1], cut)

    names = " or ".join(f"{o} alpha={getattr(aug, o)}" for o in ops) + (
        " (one per batch, 50/50)" if len(ops) == 2 else ""
    )
    return [
        Step(
            "batch_ops",
            f"attach a per-batch seed (seed {seed}, fresh every epoch)",
            dataset_fn=_with_seeds(seed),
        ),
        Step("batch_ops", names, element_fn=mixing),
    ]
