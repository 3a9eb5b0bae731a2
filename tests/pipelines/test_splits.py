"""Stable, hash-based split assignment."""

from __future__ import annotations

import numpy as np

from kerasflow.pipelines import prepare
from kerasflow.pipelines.splits import assign_splits, multi_hot_strata, stable_unit
from tests.pipelines.helpers import data_config, make_class_folder, save

FRACTIONS = data_config().split


def _membership(data):
    return {k: s for k, s, _ in data.split_table()}


def test_stable_unit_is_fixed():
    assert stable_unit("cat/cat_0.png", 0) == stable_unit("cat/cat_0.png", 0)
    assert stable_unit("cat/cat_0.png", 0) != stable_unit("cat/cat_0.png", 1)
    assert 0.0 <= stable_unit("x") < 1.0


def test_exact_membership_follows_the_hash():
    keys = [f"k{i}" for i in range(200)]
    out = assign_splits(keys, np.zeros(200), FRACTIONS, seed=5)
    for i, k in enumerate(keys):
        u = stable_unit(k, 5)
        want = "train" if u < 0.7 else "validation" if u < 0.8 else "test"
        assert i in out[want]
    assert sum(len(v) for v in out.values()) == 200


def test_adding_files_never_moves_existing_ones(tmp_path):
    root = make_class_folder(tmp_path, per_class=10, size=(4, 4))
    cfg = data_config(source=str(root), image_size=[4, 4], channels=3)
    before = _membership(prepare(cfg, seed=1))
    for i in range(10, 30):
        save(np.zeros((4, 4, 3), np.uint8), root / "dog" / f"new_{i}.png")
    after = _membership(prepare(cfg, seed=1))
    assert len(after) == len(before) + 20
    assert {k: after[k] for k in before} == before


def test_stratified_gives_every_class_its_share():
    keys = [f"k{i}" for i in range(90)]
    labels = np.repeat([0, 1, 2], 30)
    strat = data_config(split={"stratify": True}).split
    out = assign_splits(keys, labels, strat, seed=0, stratify=True)
    for cls in range(3):
        counts = [int(np.sum(labels[out[s]] == cls)) for s in ("train", "validation", "test")]
        assert counts == [21, 3, 6]


def test_split_table_rows_cover_every_example_once(class_folder):
    data = prepare(data_config(source=str(class_folder), image_size=[4, 4], channels=3))
    table = data.split_table()
    assert len(table) == 12 and len({k for k, _, _ in table}) == 12
    assert {s for _, s, _ in table} <= {"train", "validation", "test"}
    assert all(data.class_names[y] == k.split("/")[0] for k, _, y in table)


def test_multi_hot_strata_are_the_rarest_label():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    # counts: label 0: 3, label 1: 3, label 2: 1; ties go to the lower id
    assert multi_hot_strata(labels).tolist() == [0, 0, -1, 2, 1]


def test_stratified_multi_hot_spreads_a_rare_label():
    keys = [f"k{i}" for i in range(200)]
    labels = np.zeros((200, 3), np.uint8)
    labels[:, 0] = 1  # a common label
    labels[:20, 2] = 1  # a rare one, in 20 examples
    labels[100:, 1] = 1
    strat = data_config(split={"stratify": True}).split
    out = assign_splits(keys, labels, strat, seed=0, stratify=True)
    rare = [int(labels[out[s], 2].sum()) for s in ("train", "validation", "test")]
    assert rare == [14, 2, 4]
    assert sum(len(v) for v in out.values()) == 200
    # the same through prepare, with the source's (n, K) labels
    from kerasflow.pipelines import from_arrays

    src = from_arrays(np.zeros((200, 2, 2), np.uint8), labels, name="s")
    data = prepare(data_config(image_size=[2, 2], split={"stratify": True}), source=src)
    got = [int(data.labels(s)[:, 2].sum()) for s in ("train", "validation", "test")]
    assert got == [14, 2, 4]
