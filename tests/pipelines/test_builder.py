"""The plan builder: step order, training-only augmentation, seeding, caching."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasflow.errors import DataError
from kerasflow.pipelines import build, from_arrays, prepare
from kerasflow.pipelines import transforms as T
from tests.pipelines.helpers import data_config

ORDER = ["read", "decode", "deterministic", "cache", "shuffle", "augment", "normalize", "batch",
         "batch_ops", "prefetch"]  # fmt: skip


def _stages(steps):
    return [s.stage for s in steps]


def _in_order(stages):
    ranks = [ORDER.index(s) for s in stages]
    return ranks == sorted(ranks)


def _arrays(n=32, size=6):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return from_arrays(images, np.arange(n) % 4, name="a")


def test_plan_order_regardless_of_declared_order(class_folder):
    cfg = data_config(
        source=str(class_folder), image_size=[8, 8], channels=3, batch_size=4,
        augment={"mixup": 0.2, "brightness": 0.1, "horizontal_flip": True,
                 "random_resized_crop": {"scale": [0.5, 1.0]}},
    )  # fmt: skip
    data = prepare(cfg)
    train = _stages(data.plan("train"))
    assert _in_order(train), train
    assert {"cache", "shuffle", "augment", "batch_ops"} <= set(train)
    text = data.plan_text(["train"])
    # declared order kept among element ops: brightness before the flip
    assert text.index("brightness 0.1; horizontal_flip") > 0
    assert "decode_and_crop_jpeg" in text and "mixup alpha=0.2" in text
    for split in ("validation", "test"):
        if data.size(split):
            stages = _stages(data.plan(split))
            assert "augment" not in stages and "shuffle" not in stages
            assert _in_order(stages)


def test_no_cache_shuffles_file_list_and_fuses_one_map(class_folder):
    cfg = data_config(source=str(class_folder), image_size=[8, 8], channels=3, cache=False,
                      augment={"horizontal_flip": True})  # fmt: skip
    steps = prepare(cfg).plan("train")
    assert _stages(steps)[:2] == ["read", "shuffle"]
    fused = [s.stage for s in steps if s.fused]
    assert fused[:2] == ["augment", "read"] and "deterministic" in fused
    assert fused[-1] == "augment"  # read to augment: one parallel map
    # normalisation is the model's first layer: no map for it, uint8 out
    normalize = next(s for s in steps if s.stage == "normalize")
    assert normalize.element_fn is None and "in the model" in normalize.detail
    assert prepare(cfg).dataset("train").element_spec[0].dtype == tf.uint8


def test_augmentation_differs_between_epochs_and_is_seeded():
    cfg = data_config(image_size=[6, 6], channels=3, batch_size=32, shuffle_buffer=0,
                      augment={"rotation": 0.2, "brightness": 0.2})  # fmt: skip
    src = _arrays()

    def two_epochs(seed):
        ds = prepare(cfg, seed=seed, source=src).dataset("train", training=True)
        return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(2)]

    e1, e2 = two_epochs(3)
    assert not np.allclose(e1, e2)  # fresh augmentation every epoch
    r1, r2 = two_epochs(3)
    np.testing.assert_array_equal(e1, r1)  # same seed, same values
    np.testing.assert_array_equal(e2, r2)


def test_validation_never_augmented_and_matches_preprocess():
    cfg = data_config(image_size=[5, 5], channels=3, augment={"rotation": 0.3, "hue": 0.2})
    src = _arrays()
    data = prepare(cfg, seed=0, source=src)
    split = "test" if data.size("test") else "train"
    got = np.concatenate([x.numpy() for x, _ in data.dataset(split, training=False)])
    want = np.stack([T.preprocess(tf.constant(src.images[i]), cfg).numpy()
                     for i in data.indices[split]])  # fmt: skip
    np.testing.assert_array_equal(got, want)
    labels = np.concatenate([y.numpy() for _, y in data.dataset(split, training=False)])
    np.testing.assert_array_equal(labels, data.labels(split))


def test_training_shuffles_but_eval_order_is_stable():
    cfg = data_config(image_size=[6, 6], channels=3, batch_size=8, split={"train": 1.0,
                      "validation": 0.0, "test": 0.0})  # fmt: skip
    data = prepare(cfg, seed=0, source=_arrays())
    ordered = np.concatenate([y.numpy() for _, y in data.dataset("train", training=False)])
    np.testing.assert_array_equal(ordered, np.arange(32) % 4)
    shuffled = [np.concatenate([y.numpy() for _, y in data.dataset("train")]) for _ in range(1)]
    assert sorted(shuffled[0]) == sorted(ordered) and not np.array_equal(shuffled[0], ordered)


def test_mixup_gives_one_hot_targets_in_every_split():
    cfg = data_config(image_size=[6, 6], channels=3, batch_size=8, augment={"cutmix": 1.0,
                      "mixup": 0.4})  # fmt: skip
    data = prepare(cfg, seed=0, source=_arrays())
    assert data.one_hot_targets
    x, y = next(iter(data.dataset("train")))
    assert y.shape == (8, 4) and y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy().sum(-1), 1.0, rtol=1e-5)
    # evaluation batches: exact one-hot of the integer labels, in dataset order
    _, y_eval = next(iter(data.dataset("train", training=False)))
    assert y_eval.dtype == tf.float32
    np.testing.assert_array_equal(y_eval.numpy().argmax(-1), data.labels("train")[:8])
    assert set(np.unique(y_eval.numpy())) == {0.0, 1.0}


def test_segmentation_augment_moves_mask_photometric_does_not(seg_folder):
    cfg = data_config(source=str(seg_folder), image_size=[16, 16], channels=3, batch_size=6,
                      split={"train": 1.0, "validation": 0.0, "test": 0.0},
                      augment={"horizontal_flip": True, "brightness": 0.3})  # fmt: skip
    data = prepare(cfg, seed=0)
    x, m = next(iter(data.dataset("train")))
    m = m.numpy()
    assert set(np.unique(m)) == {0, 1, 2}
    for mask in m:
        left = (mask[:, :8] == 1).all() and (mask[:, 8:] != 1).all()
        right = (mask[:, 8:] == 1).all() and (mask[:, :8] != 1).all()
        assert left or right  # flipped or not, as a whole: never blended
    assert any((mask[:, 8:] == 1).all() for mask in m) or len(m) < 4


def test_segmentation_rejects_mixup(seg_folder):
    cfg = data_config(source=str(seg_folder), augment={"mixup": 0.2})
    with pytest.raises(DataError, match="mixup"):
        prepare(cfg)


def test_file_cache_written_with_config_fingerprint(tmp_path, class_folder):
    prefix = tmp_path / "cache" / "c"
    prefix.parent.mkdir()
    cfg = data_config(source=str(class_folder), image_size=[4, 4], channels=3, cache=str(prefix),
                      split={"train": 1.0, "validation": 0.0, "test": 0.0})  # fmt: skip
    first = np.concatenate([x.numpy() for x, _ in build(cfg, "train", training=False)])
    files = sorted(p.name for p in prefix.parent.iterdir())
    assert files and all(f.startswith("c.train.") for f in files)
    second = np.concatenate([x.numpy() for x, _ in build(cfg, "train", training=False)])
    np.testing.assert_array_equal(first, second)
    other = cfg.model_copy(update={"image_size": (5, 5)})
    build(other, "train", training=False).reduce(0, lambda a, _: a)
    assert len({f.split(".")[2] for f in (p.name for p in prefix.parent.iterdir())}) == 2


def test_unknown_and_empty_split():
    data = prepare(data_config(split={"train": 1.0, "validation": 0.0, "test": 0.0}),
                   source=_arrays())  # fmt: skip
    with pytest.raises(DataError, match="Unknown split 'val'"):
        data.dataset("val")
    with pytest.raises(DataError, match="'test' .* is empty"):
        data.dataset("test")


@pytest.mark.parametrize("cache", [True, False])
def test_random_resized_crop_pipeline_files(class_folder, seg_folder, cache):
    cfg = data_config(source=str(class_folder), image_size=[5, 5], channels=3, batch_size=12,
                      cache=cache, split={"train": 1.0, "validation": 0.0, "test": 0.0},
                      augment={"random_resized_crop": {"scale": [0.3, 1.0]}})  # fmt: skip
    x, y = next(iter(prepare(cfg).dataset("train")))
    assert x.shape == (12, 5, 5, 3) and sorted(np.bincount(y.numpy())) == [4, 4, 4]
    seg = cfg.model_copy(update={"source": str(seg_folder), "batch_size": 6})
    x, m = next(iter(prepare(seg).dataset("train")))
    assert x.shape == (6, 5, 5, 3) and m.shape == (6, 5, 5)
    assert set(np.unique(m.numpy())) <= {0, 1, 2} and 1 in m.numpy()


def test_decoder_chosen_from_the_scanned_formats(tmp_path):
    # JPEG-only folders skip the per-image format checks; a folder with a palette
    # BMP among PNGs keeps the BMP-aware decoder (and decodes its palette right).
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    root = tmp_path / "mixed"
    for cls, fmt in (("a", "JPEG"), ("b", "JPEG")):
        (root / cls).mkdir(parents=True)
        Image.fromarray(img).save(root / cls / "x.jpg", format=fmt)
    cfg = data_config(source=str(root), image_size=[6, 7], channels=3,
                      split={"train": 1.0, "validation": 0.0, "test": 0.0})  # fmt: skip
    jpeg_only = prepare(cfg)
    assert jpeg_only.source.formats == {"JPEG"}
    assert "decode JPEG to 3 channel(s)" in jpeg_only.plan_text(["train"])
    Image.fromarray(img).convert("P").save(root / "a" / "p.bmp")
    Image.fromarray(img).save(root / "b" / "y.png")
    mixed = prepare(cfg)
    assert mixed.source.formats == {"BMP", "JPEG", "PNG"}
    assert "decode BMP/JPEG/PNG to 3 channel(s)" in mixed.plan_text(["train"])
    got = dict(zip([mixed.source.paths[i] for i in mixed.indices["train"]],
                   mixed.dataset("train", training=False, batch=False), strict=True))  # fmt: skip
    want_bmp = np.asarray(Image.open(root / "a" / "p.bmp").convert("RGB"))
    np.testing.assert_array_equal(got[str(root / "a" / "p.bmp")][0].numpy(), want_bmp)
    np.testing.assert_array_equal(got[str(root / "b" / "y.png")][0].numpy(), img)


def test_float_augments_and_mixup_keep_the_pixel_scale():
    base = {"image_size": [8, 8], "channels": 3, "batch_size": 16, "shuffle_buffer": 0,
            "split": {"train": 1.0, "validation": 0.0, "test": 0.0}}  # fmt: skip
    rotated = prepare(data_config(**base, augment={"rotation": 0.2, "brightness": 0.2}), seed=3)
    assert "then float32 0..255" in rotated.plan_text(["train"])
    x, _ = next(iter(rotated.dataset("train")))
    x = x.numpy()
    # 0..255 pixels, not rounded (interpolated values between levels), not 0..1
    assert x.dtype == np.float32 and x.max() > 200 and x.min() >= 0
    assert np.any(np.abs(x - np.round(x)) > 0.01)
    flipped = prepare(data_config(**base, augment={"horizontal_flip": True}), seed=3)
    assert next(iter(flipped.dataset("train")))[0].dtype == tf.uint8  # flips keep uint8
    mixed = prepare(data_config(**base, augment={"mixup": 0.4}), seed=3)
    x, y = next(iter(mixed.dataset("train")))
    x = x.numpy()
    # MixUp blends 0..255 pixels (float32): values between levels, still on the pixel scale
    assert x.dtype == np.float32 and x.max() > 200 and x.min() >= 0
    assert np.any(np.abs(x - np.round(x)) > 0.01)
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, rtol=1e-5)
