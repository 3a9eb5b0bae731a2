"""What to search: the run config, with each trial's values set at their dotted paths.

:class:`ConfigHyperModel` is the Keras Tuner ``HyperModel`` of a search. It
declares the space on a ``HyperParameters``, turns a trial's values into the
trial's :class:`~kerasflow.config.RunConfig`, prepares that config's data
(once per distinct ``data`` section and seed) and builds its compiled model.
"""

from __future__ import annotations

import json
import logging

import keras
import keras_tuner

from kerasflow import tasks
from kerasflow.config import RunConfig, build_config
from kerasflow.training.compile import build_compiled_model
from kerasflow.tuning.search_space import ParamSpec, apply_values, declare

log = logging.getLogger(__name__)


class ConfigHyperModel(keras_tuner.HyperModel):
    """The search's HyperModel: base run config + parameters at dotted paths.

    Args:
        base: the run config whose ``tune`` section is being run.
        specs: the parsed ``tune.space`` (parents before children).
        epochs: epochs of each trial (Hyperband sets its own per trial).
    """

    def __init__(self, base: RunConfig, specs: list[ParamSpec], epochs: int | None = None):
        super().__init__(name="kerasflow_config", tunable=True)
        self.base = base.to_dict()
        self.base.pop("tune", None)
        self.specs = specs
        self.epochs = epochs
        self._data: dict[str, object] = {}

    def declare_hyperparameters(self, hp) -> None:
        declare(hp, self.specs)

    def trial_config(self, values: dict, epochs: int | None = None) -> RunConfig:
        """The run config of a trial with ``values`` (``tuner/...`` entries are ignored)."""
        data = apply_values(self.base, self.specs, values)
        epochs = epochs or self.epochs
        if epochs:
            data.setdefault("train", {})["epochs"] = int(epochs)
        return build_config(data, origin="(trial)")

    def data(self, cfg: RunConfig):
        """The prepared data of ``cfg``, loaded once per distinct data section and seed."""
        key = json.dumps([cfg.data.model_dump(mode="json"), cfg.experiment.seed], sort_keys=True)
        if key not in self._data:
            task = tasks.get(cfg.experiment.task)
            self._data[key] = task.prepare(cfg.data, cfg.experiment.seed)
        else:
            log.debug("reusing prepared data for %s", cfg.data.source)
        return self._data[key]

    def build(self, hp) -> keras.Model:
        cfg = self.trial_config(hp.values)
        return build_compiled_model(cfg, self.data(cfg))
