"""Defaults are part of the product: a config written from the README alone trains well on a folder."""

from __future__ import annotations

import pytest
import yaml

import kerasflow
from tests.training.digits_folder import write_digits_folder


@pytest.mark.slow
def test_readme_config_on_a_digits_folder_trains_well(tmp_path):
    # The user's config: a class-per-folder copy of the digits at 32x32, the model and its
    # size, 10 epochs. No bn_momentum, dropout, learning rate or schedule: the defaults.
    # (With Keras' BatchNormalization momentum 0.99 this evaluated at chance, 0.098.)
    folder = write_digits_folder(tmp_path / "digits", size=32)
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"source": str(folder), "image_size": [32, 32]},
                "model": {
                    "name": "simple_cnn",
                    "params": {"width": 32, "depth": 2, "dense_units": 128},
                },
                "train": {"epochs": 10, "verbose": 0},
            }
        )
    )
    cfg = kerasflow.load_config(
        path,
        [
            f"experiment.work_dir={tmp_path / 'runs'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        ],
    )
    result = kerasflow.train(cfg)
    assert result.test_metrics["test_accuracy"] >= 0.95
    assert result.registered is not None and result.registered.champion
