"""Bad input: each case with on_bad_image error and skip, and the always-errors."""

from __future__ import annotations

import numpy as np
import pytest

from kerasflow.errors import DataError
from kerasflow.pipelines import prepare
from kerasflow.pipelines.check import check_data
from kerasflow.pipelines.sources import load_source
from tests.pipelines.helpers import data_config, gradient_image, make_class_folder, save

HTML = b"<!DOCTYPE html><html><body>Not found</body></html>"


def _bad_file(path, kind):
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "html_as_jpg":
        path.write_bytes(HTML)
    elif kind == "truncated_jpeg":
        save(gradient_image(32, 32), path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "corrupt_png":
        save(gradient_image(8, 8), path)
        data = bytearray(path.read_bytes())
        data[12:20] = b"\x00" * 8  # break the IHDR chunk
        path.write_bytes(bytes(data))


CASES = {
    "zero_byte": ("bad.jpg", "empty file"),
    "html_as_jpg": ("bad.jpg", "HTML"),
    "truncated_jpeg": ("bad.jpg", "truncated JPEG"),
    "corrupt_png": ("bad.png", "unreadable PNG header"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def bad_folder(request, tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp(request.param), per_class=2, size=(6, 6))
    name, reason = CASES[request.param]
    _bad_file(root / "dog" / name, request.param)
    return root, root / "dog" / name, reason


def test_error_policy_names_the_file(bad_folder):
    root, bad, reason = bad_folder
    cfg = data_config(source=str(root), image_size=[6, 6], channels=3)
    with pytest.raises(DataError, match=reason) as info:
        prepare(cfg)
    assert str(bad) in str(info.value) and "on_bad_image: skip" in str(info.value)


def test_error_policy_names_every_bad_file_in_one_error(tmp_path):
    """Everything is scanned first: three bad files are three lines of one error, not three runs."""
    root = make_class_folder(tmp_path, per_class=2, size=(6, 6))
    bad = [root / "cat" / "a.jpg", root / "dog" / "b.png", root / "fox" / "c.jpg"]
    for path, kind in zip(bad, ["zero_byte", "corrupt_png", "html_as_jpg"], strict=True):
        _bad_file(path, kind)
    with pytest.raises(DataError) as info:
        prepare(data_config(source=str(root), image_size=[6, 6], channels=3))
    lines = str(info.value).splitlines()
    assert lines[0] == "3 bad image files:"
    for line, path, reason in zip(
        lines[1:4], bad, ["empty file", "unreadable PNG header", "HTML"], strict=True
    ):
        assert line.startswith(f"  {path}: ") and reason in line
    assert "on_bad_image: skip" in lines[4]


def test_skip_policy_lists_file_and_trains(bad_folder):
    root, bad, reason = bad_folder
    cfg = data_config(source=str(root), image_size=[6, 6], channels=3, on_bad_image="skip",
                      split={"train": 1.0, "validation": 0.0, "test": 0.0})  # fmt: skip
    data = prepare(cfg)
    assert len(data.skipped) == 1
    path, why = data.skipped[0]
    assert path == str(bad) and reason in why
    assert data.size("train") == 6
    n = sum(int(x.shape[0]) for x, _ in data.dataset("train"))
    assert n == 6


def test_check_reports_bad_file_whatever_the_policy(bad_folder):
    root, bad, reason = bad_folder
    report = check_data(data_config(source=str(root), image_size=[6, 6], channels=3))
    assert not report.ok
    assert [p for p, _ in report.problems] == [str(bad)]
    assert report.class_counts == {"cat": 2, "dog": 2, "fox": 2}
    text = report.to_text()
    assert reason in text and "problem(s) found" in text


def test_empty_class_folder_is_an_error(tmp_path):
    root = make_class_folder(tmp_path, per_class=1, size=(4, 4))
    (root / "owl").mkdir()
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match=r"owl has no images"):
            load_source(data_config(source=str(root), on_bad_image=policy))


def test_image_too_small_is_an_error(tmp_path):
    root = make_class_folder(tmp_path, per_class=1, size=(4, 4))
    save(np.zeros((2, 9, 3), np.uint8), root / "cat" / "thin.png")
    cfg = data_config(source=str(root), min_image_side=3)
    for policy in ("error", "skip"):
        cfg = cfg.model_copy(update={"on_bad_image": policy})
        with pytest.raises(DataError, match=r"thin\.png is 9x2, smaller than data\.min_image_side"):
            load_source(cfg)


def test_unsupported_extensions_are_counted(tmp_path):
    root = make_class_folder(tmp_path, per_class=1, size=(4, 4))
    (root / "cat" / "notes.txt").write_text("hi")
    (root / "dog" / "x.tiff").write_bytes(b"II*\x00")
    (root / "dog" / "y.txt").write_text("hi")
    data = prepare(data_config(source=str(root)))
    assert data.ignored == {".txt": 2, ".tiff": 1}
    assert (
        "ignored (unsupported extension): 3" in check_data(data_config(source=str(root))).to_text()
    )


def test_mislabelled_content_is_noted(tmp_path):
    root = make_class_folder(tmp_path, per_class=1, size=(4, 4))
    save(gradient_image(4, 4), root / "fox" / "png_inside.jpg", format="PNG")
    report = check_data(data_config(source=str(root)))
    assert report.ok and ("fox/png_inside.jpg" in report.notes[0][0])
    assert "PNG data in a .jpg file" in report.notes[0][1]


def test_segmentation_mask_value_outside_class_names(seg_folder):
    with pytest.raises(DataError, match="outside class_names"):
        from kerasflow.pipelines.sources.source_data import check_mask_values

        check_mask_values(np.array([[0, 3]]), ["a", "b"], "masks")
    report = check_data(data_config(source=str(seg_folder), class_names=["bg", "left"]))
    assert not report.ok and "mask values [2] outside class_names" in report.to_text()


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_mask_without_image_is_an_error_under_both_policies(tmp_path, policy):
    from tests.pipelines.helpers import make_segmentation_folder

    root = make_segmentation_folder(tmp_path, count=2)
    save(np.zeros((16, 16), np.uint8), root / "masks" / "lonely.png")
    with pytest.raises(DataError, match=r"lonely\.png has no image"):
        load_source(data_config(source=str(root), on_bad_image=policy))


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_label_outside_class_names_under_both_policies(tmp_path, policy):
    save(gradient_image(8, 8), tmp_path / "a.png")
    (tmp_path / "m.jsonl").write_text('{"path": "a.png", "label": "zebra"}\n')
    cfg = data_config(source=str(tmp_path / "m.jsonl"), class_names=["ant"], on_bad_image=policy)
    with pytest.raises(DataError, match=r"label 'zebra' of a\.png is not in data\.class_names"):
        load_source(cfg)
