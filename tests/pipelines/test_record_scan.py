"""Bad records of TFRecord and TFDS sources: found before training, under both policies."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasflow.errors import DataError
from kerasflow.pipelines import prepare
from kerasflow.pipelines.check import check_data
from tests.pipelines.helpers import data_config, encode, gradient_image, make_tfds

ALL_TRAIN = {"train": 1.0, "validation": 0.0, "test": 0.0}
HTML = b"<!DOCTYPE html><html><body>Not found</body></html>"


def _bytes_feature(data: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))


def _write(path, records: list[dict]) -> str:
    with tf.io.TFRecordWriter(str(path)) as w:
        for feats in records:
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    return str(path)


def _image_record(data: bytes, label: int) -> dict:
    return {
        "image/encoded": _bytes_feature(data),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }


def _good(i: int) -> tuple[bytes, np.ndarray]:
    """A real PNG (even i) or JPEG (odd i), each record's colours its own, and its pixels."""
    pixels = np.clip(gradient_image(6, 8, seed=i).astype(int) + 25 * i, 0, 255).astype(np.uint8)
    data = encode(Image.fromarray(pixels), "PNG" if i % 2 == 0 else "JPEG", quality=95)
    # Pillow's pixels: the pipeline decodes JPEG with libjpeg's accurate IDCT, as Pillow does
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Two TFRecord files of real PNG/JPEG records; a.tfrecord#2 is a truncated JPEG."""
    root = tmp_path_factory.mktemp("records")
    pixels = {}
    files = {}
    for k, (name, n) in enumerate((("a", 4), ("b", 3))):
        rows = []
        for i in range(n):
            data, pixels[(name, i)] = _good(4 * k + i)
            if name == "a" and i == 2:
                jpeg = _good(1)[0]
                data = jpeg[: len(jpeg) // 2]
                del pixels[(name, i)]
            rows.append(_image_record(data, i % 2))
        files[name] = _write(root / f"{name}.tfrecord", rows)
    return root, files, pixels


def _config(root, **kw):
    return data_config(source=str(root / "*.tfrecord"), image_size=[6, 8], channels=3,
                       normalize="none", split=ALL_TRAIN, **kw)  # fmt: skip


def test_error_policy_names_file_record_and_feature(records):
    root, files, _ = records
    with pytest.raises(DataError) as info:
        prepare(_config(root))
    msg = str(info.value)
    assert f"{files['a']}#2" in msg and "'image/encoded'" in msg and "truncated JPEG" in msg
    assert "on_bad_image: skip" in msg


def test_skip_policy_lists_record_and_trains_on_the_rest(records):
    root, files, pixels = records
    data = prepare(_config(root, on_bad_image="skip"))
    assert [p for p, _ in data.skipped] == [f"{files['a']}#2"]
    assert "truncated JPEG" in data.skipped[0][1]
    assert data.size("train") == 6 and "a.tfrecord:2" not in data.source.keys
    keys = [data.source.keys[i] for i in data.indices["train"]]
    got = list(data.dataset("train", training=False, batch=False).as_numpy_iterator())
    assert [int(y) for _, y in got] == data.labels("train").tolist()
    for key, (image, _) in zip(keys, got, strict=True):
        name, index = key.split(".tfrecord:")
        want = pixels[(name, int(index))]
        np.testing.assert_array_equal(image, want.astype(np.float32), err_msg=key)


def test_check_reports_the_bad_record(records):
    root, files, _ = records
    report = check_data(_config(root))
    assert not report.ok and report.num_examples == 6
    assert [p for p, _ in report.problems] == [f"{files['a']}#2"]
    assert f"{files['a']}#2: feature 'image/encoded': truncated JPEG" in report.to_text()
    # The sizes come from the record scan (no second decode): the 6 good 8x6 images.
    assert report.sizes == [(8, 6)] * 6 and report.modes == {"decoded": 6}
    assert prepare(_config(root, on_bad_image="skip")).source.sizes.tolist() == [[6, 8]] * 6


@pytest.mark.parametrize(
    "bad,reason",
    [(b"", "empty"), (HTML, "HTML"), (b"\x89PNG\r\n\x1a\n" + b"\0" * 40 + b"IEND", "PNG")],
)
def test_each_kind_of_bad_bytes_is_named(tmp_path, bad, reason):
    good, _ = _good(0)
    path = _write(tmp_path / "d.tfrecord", [_image_record(good, 0), _image_record(bad, 1)])
    cfg = data_config(source=path, image_size=[6, 8], channels=1, on_bad_image="skip")
    data = prepare(cfg)
    assert [p for p, _ in data.skipped] == [f"{path}#1"] and reason in data.skipped[0][1]


def test_record_without_the_image_feature(tmp_path):
    good, _ = _good(0)
    missing = {"image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))}
    path = _write(tmp_path / "d.tfrecord", [_image_record(good, 0), missing])
    with pytest.raises(DataError, match=r"d\.tfrecord#1: feature 'image/encoded' holds 0 values"):
        prepare(data_config(source=path, image_size=[6, 8]))


def test_segmentation_record_with_bad_or_misfit_mask(tmp_path):
    mask = np.zeros((6, 8, 1), np.uint8)
    mask[:, 4:] = 1
    image = tf.io.encode_png(np.repeat(mask * 200, 3, axis=-1)).numpy()
    png_mask = tf.io.encode_png(mask).numpy()
    small_mask = tf.io.encode_png(mask[:5]).numpy()
    rows = [
        {"image/encoded": _bytes_feature(image), "image/mask": _bytes_feature(m)}
        for m in (png_mask, png_mask[:30], small_mask)
    ]
    path = _write(tmp_path / "seg.tfrecord", rows)
    cfg = data_config(source=path, image_size=[6, 8], channels=3, class_names=["bg", "fg"],
                      tfrecord={"mask_key": "image/mask"}, on_bad_image="skip", split=ALL_TRAIN)  # fmt: skip
    data = prepare(cfg)
    assert dict(data.skipped) == {
        f"{path}#1": "feature 'image/mask': truncated PNG (no IEND chunk)",
        f"{path}#2": "the mask's size differs from the image's",
    }
    ((_, got),) = data.dataset("train", training=False, batch=False).as_numpy_iterator()
    np.testing.assert_array_equal(got, mask[..., 0])


@pytest.fixture(scope="module")
def tfds_with_bad_image(tmp_path_factory):
    """A real TFDS dataset whose builder was handed one truncated JPEG (TFDS stores bytes as-is)."""
    import tensorflow_datasets as tfds

    rows = []
    for i in range(5):
        data = encode(Image.fromarray(gradient_image(6, 8, seed=i)), "JPEG")
        rows.append((f"ex{i}", {"image": data[:60] if i == 3 else data, "label": i % 2}))
    features = {"image": tfds.features.Image(shape=(None, None, 3)), "label": tf.int64}
    return make_tfds(tmp_path_factory.mktemp("tfds_bad"), "ToyPictures", features, {"train": rows})


def _tfds_config(data_dir, **kw):
    return data_config(source="tfds:toy_pictures:1.0.0", image_size=[6, 8], channels=3,
                       tfds={"data_dir": str(data_dir), "download": False},
                       split={**ALL_TRAIN, "source_names": {"train": "train"}}, **kw)  # fmt: skip


def test_tfds_bad_image_under_both_policies(tfds_with_bad_image):
    with pytest.raises(DataError, match=r"of TFDS dataset 'toy_pictures:1.0.0' split 'train'"):
        prepare(_tfds_config(tfds_with_bad_image))
    data = prepare(_tfds_config(tfds_with_bad_image, on_bad_image="skip"))
    ((name, reason),) = data.skipped
    assert name.startswith("toy_pictures-train.tfrecord") and "truncated JPEG" in reason
    assert data.size("train") == 4 and name not in data.source.keys
    images = [x for x, _ in data.dataset("train", training=False, batch=False)]
    assert len(images) == 4


def test_cli_data_check_lists_the_bad_record(records):
    from click.testing import CliRunner

    from kerasflow.cli import cli

    root, files, _ = records
    result = CliRunner().invoke(
        cli, ["data", "check", "--set", f"data.source={root / '*.tfrecord'}"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"{files['a']}#2: feature 'image/encoded': truncated JPEG" in result.output
    assert "6 usable examples" in result.output


def test_scan_records_off_skips_the_pass(records):
    # Without the pass, prepare does not see the bad record; under skip, tf.data
    # drops it while reading, and the good records still arrive.
    root, _, pixels = records
    data = prepare(_config(root, scan_records=False))
    assert data.size("train") == 7 and not data.skipped and data.source.sizes is None
    skipping = prepare(_config(root, scan_records=False, on_bad_image="skip"))
    got = [x for x, _ in skipping.dataset("train", training=False, batch=False)]
    assert len(got) == len(pixels) == 6
