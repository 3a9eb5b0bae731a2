"""Session fixtures for the pipelines tests (tiny image files in tmp folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.helpers import make_class_folder, make_segmentation_folder


@pytest.fixture(scope="session")
def class_folder(tmp_path_factory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="session")
def seg_folder(tmp_path_factory) -> Path:
    return make_segmentation_folder(tmp_path_factory.mktemp("seg"))
