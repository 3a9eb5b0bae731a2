"""Pascal VOC detection annotations: ``Annotations/*.xml`` with images in ``JPEGImages/``."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from kerasflow.errors import DataError
from kerasflow.pipelines.sources.boxes import (
    BadAnnotation,
    DetectionSource,
    add_example,
    check_box,
    class_index,
    reject_image,
)


def _voc_text(node, tag: str, where: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise BadAnnotation(f"{where} has no <{tag}>")
    return child.text.strip()


def load_voc(folder: str | os.PathLike, class_names=None, on_bad="error") -> DetectionSource:
    """Read a Pascal VOC folder: ``Annotations/*.xml`` with images in ``JPEGImages/``.

    VOC pixel coordinates are 1-based and inclusive; ``xmin - 1`` and ``xmax``
    become the box's edges. Without ``class_names`` the classes are the sorted
    object names found.
    """
    folder = Path(folder)
    ann_dir = folder / "Annotations"
    if not ann_dir.is_dir():
        raise DataError(f"{folder} has no Annotations/ folder; is it a Pascal VOC folder?")
    files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise DataError(f"{ann_dir} has no .xml files.")
    parsed = []
    found = set()
    for file in files:
        try:
            root = ET.parse(file).getroot()
        except ET.ParseError as exc:
            parsed.append((file, None, f"is not valid XML ({exc})"))
            continue
        parsed.append((file, root, None))
        found.update((o.findtext("name") or "").strip() for o in root.iter("object"))
    index = class_index(sorted(found - {""}), class_names)
    src = DetectionSource(name=str(folder), class_names=list(index))
    for file, root, error in parsed:
        key = file.name
        try:
            if error:
                raise BadAnnotation(error)
            image_file = folder / "JPEGImages" / _voc_text(root, "filename", str(file))
            if not image_file.is_file():
                raise BadAnnotation(f"image file {image_file} is missing")
            size = root.find("size")
            if size is None:
                raise BadAnnotation("has no <size>")
            width = float(_voc_text(size, "width", "<size>"))
            height = float(_voc_text(size, "height", "<size>"))
            boxes, classes = [], []
            for j, obj in enumerate(root.iter("object")):
                name = _voc_text(obj, "name", f"object {j}")
                if name not in index:
                    raise BadAnnotation(f"object {j} has unknown class {name!r}")
                if (obj.findtext("difficult") or "0").strip() == "1":
                    src.ignored["difficult objects"] += 1
                    continue
                bb = obj.find("bndbox")
                if bb is None:
                    raise BadAnnotation(f"object {j} has no <bndbox>")
                vals = [
                    float(_voc_text(bb, t, f"object {j}")) for t in ("xmin", "ymin", "xmax", "ymax")
                ]
                xyxy = (vals[0] - 1.0, vals[1] - 1.0, vals[2], vals[3])
                boxes.append(check_box(xyxy, width, height, f"object {j} ({name}) box {vals}"))
                classes.append(index[name])
        except BadAnnotation as exc:
            reject_image(src, str(file), key, str(exc), on_bad)
            continue
        except ValueError as exc:
            reject_image(src, str(file), key, f"malformed value ({exc})", on_bad)
            continue
        add_example(src, key, image_file, boxes, classes, (width, height))
    return src
