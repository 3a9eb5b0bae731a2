"""Your own model.fit script, with kerasflow's pieces one by one.

    python examples/fit_script.py --epochs 5

Data from the config's pipeline, a model from the zoo, your own compile and
fit, and every epoch logged to MLflow by kerasflow's callback.
"""

from __future__ import annotations

import argparse

import keras

import kerasflow
from kerasflow import models, pipelines
from kerasflow.tracking import MlflowCallback


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tracking-uri", default=None, help="default: ./mlruns/mlflow.db")
    args = parser.parse_args(argv)

    cfg = kerasflow.load_config()  # the packaged digits config
    train_ds = pipelines.build(cfg.data, "train", seed=cfg.experiment.seed)
    val_ds = pipelines.build(cfg.data, "validation", seed=cfg.experiment.seed)

    # The pipeline yields uint8 pixels; input_scaling puts data.normalize into the model.
    model = models.build("simple_cnn", (16, 16, 1), 10, input_scaling=cfg.data, width=16)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    callback = MlflowCallback(experiment="fit-script", tracking_uri=args.tracking_uri)
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=[callback], verbose=2
    )
    print(f"MLflow run {callback.run_id}: val_accuracy {history.history['val_accuracy'][-1]:.4f}")
    return {"run_id": callback.run_id, "history": history.history}


if __name__ == "__main__":
    main()
