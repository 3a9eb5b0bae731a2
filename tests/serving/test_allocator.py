"""serving.allocator: serving processes allocate with malloc unless the user chose otherwise.

The effect itself is measured on a real server in
``tests/serving/test_fuzz.py::test_large_images_leave_no_memory_behind``.
"""

from __future__ import annotations

import os

import pytest

from kerasflow.serving import allocator


@pytest.mark.parametrize(
    ("given", "result", "after"),
    [(None, True, "true"), ("false", False, "false"), ("1", True, "1"), ("0", False, "0")],
)
def test_set_unless_the_user_set_it(monkeypatch, given, result, after):
    monkeypatch.setenv(allocator.ENV, "placeholder")  # so the test's value is undone after
    if given is None:
        monkeypatch.delenv(allocator.ENV)
    else:
        monkeypatch.setenv(allocator.ENV, given)
    assert allocator.release_memory_after_requests() is result
    assert allocator.ENV == "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"
    assert os.environ[allocator.ENV] == after


def test_memory_pool_flag_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "true")
    assert allocator.release_memory_after_requests(pool=True) is False
    assert os.environ[allocator.ENV] == "false"
