"""train.finetune: frozen phase leaves the backbone untouched, phase 2 trains it; resume in phase 2.

Also ``model.pretrained`` from a registered MLflow model (its log, params and
``pretrained_layers.json``), and ``data.sampling`` / ``train.class_weight``
feeding ``fit``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import kerasflow
from kerasflow import tasks
from kerasflow.training import finetune, transfer
from kerasflow.training.compile import build_compiled_model
from kerasflow.training.fit import fit_model, work_dir_for
from tests.conftest import overrides_for
from tests.training.digits_folder import write_digits_folder

CNN = ["model.params={width: 8, depth: 2, dense_units: 16, dropout: 0.0}"]
SMALL = [
    "data.image_size=[16,16]",
    "train.verbose=0",
    "train.explain_images=0",
    "compile.schedule.warmup_epochs=0",
    *CNN,
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    return (
        write_digits_folder(root / "d04", size=16, classes=range(5), per_class=30),
        write_digits_folder(root / "d59", size=16, classes=range(5, 10), per_class=30),
    )


def _layer_values(model, names):
    return {n: [np.array(w) for w in model.get_layer(n).get_weights()] for n in names}


def _same(a, b):
    return all(all(np.array_equal(x, y) for x, y in zip(a[n], b[n], strict=True)) for n in a)


@pytest.mark.slow
def test_frozen_phase_keeps_backbone_and_bn_statistics(tmp_path, folders):
    src_cfg = kerasflow.load_config(None, [f"data.source={folders[0]}", *SMALL])
    src_task = tasks.get("classification")
    src_model = build_compiled_model(src_cfg, src_task.prepare(src_cfg.data, 0))
    src_model.save(tmp_path / "src.keras")

    cfg = kerasflow.load_config(
        None,
        [
            f"data.source={folders[1]}",
            *SMALL,
            f"model.pretrained={tmp_path / 'src.keras'}",
            "train.finetune={freeze_epochs: 1, lr_factor: 0.1}",
            "train.epochs=2",
            "train.steps_per_epoch=3",
            "compile.schedule.warmup_epochs=0",
        ],
    )
    task = tasks.get("classification")
    prepared = task.prepare(cfg.data, 0)
    model = build_compiled_model(cfg, prepared)
    report = transfer.report_of(model)
    # A .keras file carries no contract: its head of the same shape loads too, and trains
    # in phase 1 all the same.
    assert len(report.loaded) == 10 and not report.skipped
    backbone = [n for n in report.loaded if n != "simple_cnn_logits"]
    assert [layer.name for layer in finetune.pretrained_layers(model)] == backbone
    start = _layer_values(model, backbone)
    head_start = _layer_values(model, ["simple_cnn_logits"])
    assert _same(start, _layer_values(src_model, backbone))

    finetune.compile_phase(model, cfg, prepared, cfg.compile, 1, task)
    assert not any(model.get_layer(n).trainable for n in backbone)
    short = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})})
    fit_model(model, short, prepared, [])
    after1 = _layer_values(model, backbone)
    # Bit-identical kernels and BN gamma/beta *and* moving mean/variance (inference-mode BN).
    assert _same(after1, start)
    assert not _same(_layer_values(model, ["simple_cnn_logits"]), head_start)

    names = finetune.compile_phase(model, cfg, prepared, cfg.compile, 2, task)
    assert names == backbone
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)
    fit_model(model, cfg, prepared, [], initial_epoch=1)
    after2 = _layer_values(model, backbone)
    for name in ("simple_cnn_block1_conv1", "simple_cnn_block2_conv2_bn"):
        for i, (a, b) in enumerate(zip(after2[name], after1[name], strict=True)):
            assert not np.array_equal(a, b), (name, i)  # BN moving mean/var (i=2,3) too


def test_last_stages_unfreezes_the_last_blocks():
    names = ["m_stem_conv", "m_block1_conv1", "m_block1_bn", "m_block2_conv1", "m_block2_bn"]
    from kerasflow.config import UnfreezeStages

    assert finetune.unfrozen_layers(names, UnfreezeStages(last_stages=1)) == names[3:]
    assert finetune.unfrozen_layers(names, UnfreezeStages(last_stages=2)) == names[1:]
    assert finetune.unfrozen_layers(names, "all") == names


def _metadata_epoch(path):
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_registered_model_starts_a_finetune_that_resumes_in_phase_2(
    tmp_path, folders, store_dir, tracking_uri
):
    src = kerasflow.train(
        None,
        overrides=overrides_for(
            store_dir,
            tracking_uri,
            "ft-src",
            f"data.source={folders[0]}",
            *SMALL,
            "train.epochs=1",
            "tracking.registered_model=ft-src",
        ),
    )
    uri = f"models:/ft-src/{src.registered_version}"
    sets = overrides_for(
        store_dir,
        tracking_uri,
        "ft-dst",
        f"data.source={folders[1]}",
        *SMALL,
        f"model.pretrained={uri}",
        "train.finetune={freeze_epochs: 2, lr_factor: 0.1, warmup_epochs: 1}",
        "train.epochs=8",
        "train.early_stopping.enabled=false",
        "data.batch_size=16",
        "tracking.register_model=false",
    )
    cfg = kerasflow.load_config(None, sets)
    meta = work_dir_for(cfg) / "backup" / "training_metadata.json"
    args = [sys.executable, "-m", "kerasflow", "train"]
    for item in sets:
        args += ["--set", item]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(tmp_path / "first.log", "w") as log_file:
        first = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while _metadata_epoch(meta) < 3 and time.time() < deadline and first.poll() is None:
            time.sleep(0.05)
        killed_after = _metadata_epoch(meta)
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert 3 <= killed_after < 8
    state = json.loads((work_dir_for(cfg) / "state.json").read_text())
    assert state["finetune_phase"] == 2 and state["status"] == "running"

    result = kerasflow.train(cfg)
    assert result.run_id == state["run_id"]
    assert result.initial_epoch >= 3  # resumed in phase 2, not from phase 1
    client = MlflowClient(tracking_uri)
    steps = [m.step for m in client.get_metric_history(result.run_id, "loss")]
    assert sorted(steps) == list(range(1, 9))
    lrs = {m.step: m.value for m in client.get_metric_history(result.run_id, "learning_rate")}
    assert lrs[1] == pytest.approx(1e-3) and lrs[8] < 1e-4  # phase 2: x0.1, then the schedule
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["pretrained.source"] == uri
    assert run.data.params["pretrained.loaded_layers"] == "9"
    assert run.data.params["pretrained.skipped"] == "simple_cnn_logits"
    path = client.download_artifacts(result.run_id, "pretrained_layers.json", str(tmp_path))
    with open(path) as f:
        layers = json.load(f)
    assert layers["skipped"]["simple_cnn_logits"].startswith("head rebuilt: classes")
    assert "simple_cnn_block1_conv1" in layers["loaded"]
    assert "9 layers loaded" in (tmp_path / "first.log").read_text()
