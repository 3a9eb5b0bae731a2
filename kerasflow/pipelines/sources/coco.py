"""COCO-style detection annotations: one JSON file with ``images``, ``annotations``, ``categories``."""

from __future__ import annotations

import json
import os
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


def load_coco(path: str | os.PathLike, image_root=None, class_names=None, on_bad="error"):
    """Read a COCO-style JSON file (``images``, ``annotations``, ``categories``).

    Class ids follow ``class_names`` when given (categories are matched by
    name), else the categories sorted by id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"COCO annotation file not found: {path}. Check data.source.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path} has no {key!r} list; is it a COCO annotation file?")
    root = Path(image_root) if image_root else path.parent
    categories = sorted(data["categories"], key=lambda c: c["id"])
    cat_name = {c["id"]: str(c["name"]) for c in categories}
    index = class_index([cat_name[c["id"]] for c in categories], class_names)
    src = DetectionSource(name=str(path), class_names=list(index))
    per_image: dict = {}
    for i, ann in enumerate(data["annotations"]):
        per_image.setdefault(ann.get("image_id"), []).append((i, ann))
    for image in data["images"]:
        key = str(image.get("file_name"))
        where = f"{path}: image {key!r} (id {image.get('id')})"
        try:
            width, height = float(image["width"]), float(image["height"])
            file = root / key
            if not file.is_file():
                raise BadAnnotation(f"image file {file} is missing")
            boxes, classes = [], []
            for i, ann in per_image.get(image.get("id"), []):
                if ann.get("iscrowd", 0):
                    src.ignored["crowd boxes"] += 1
                    continue
                cat = ann.get("category_id")
                name = cat_name.get(cat)
                if name is None or name not in index:
                    raise BadAnnotation(
                        f"annotations[{i}] has unknown class category_id={cat!r}"
                        + (f" ({name!r} is not in data.class_names)" if name else "")
                    )
                bbox = ann.get("bbox")
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise BadAnnotation(f"annotations[{i}].bbox must be [x, y, w, h]: {bbox!r}")
                x, y, w, h = bbox
                if w < 0 or h < 0:
                    raise BadAnnotation(
                        f"annotations[{i}].bbox {bbox} has a negative width or height"
                    )
                xyxy = (x, y, x + w, y + h)
                boxes.append(check_box(xyxy, width, height, f"annotations[{i}].bbox {bbox} ->"))
                classes.append(index[name])
        except BadAnnotation as exc:
            reject_image(src, where, key, str(exc), on_bad)
            continue
        except (KeyError, TypeError, ValueError) as exc:
            reject_image(src, where, key, f"malformed entry ({exc!r})", on_bad)
            continue
        add_example(src, key, file, boxes, classes, (width, height))
    return src
