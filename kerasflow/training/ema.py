"""``compile.optimizer.ema`` in ``fit``: the averaged weights validated, kept and registered.

Keras keeps the exponential moving average of the weights in the optimizer
(``use_ema``). :func:`swap_callbacks` gives ``SwapEMAWeights(swap_on_epoch=True)``:
validation runs on the averages, and at every epoch's end they are swapped into
the model before the checkpoint saves it, so the best checkpoint (what the run
evaluates, logs and registers) holds averaged weights; the raw weights come back
when the next epoch starts, and ``fit`` ends with the averages in the model.

At an epoch's end the model therefore holds the averages and the optimizer the
raw weights. :func:`backup_and_restore` makes the resume backup hold them the
right way round (raw weights in the model, averages in the optimizer), as at
any step of training, so a resumed run continues training the raw weights.
"""

from __future__ import annotations

import keras


def swap_callbacks(compile_config) -> list[keras.callbacks.Callback]:
    """``[SwapEMAWeights(swap_on_epoch=True)]`` when ``compile.optimizer.ema`` is on, else ``[]``."""
    if not compile_config.optimizer.ema:
        return []
    return [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]


class _RawBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that saves with the raw weights in the model (see the module)."""

    def __init__(self, swap: keras.callbacks.SwapEMAWeights, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.swap = swap

    def on_epoch_end(self, epoch, logs=None):
        swapped = bool(getattr(self.swap, "_ema_weights_in_model", False))
        if swapped:
            self.swap._swap_variables()  # raw weights into the model, averages into the optimizer
        try:
            super().on_epoch_end(epoch, logs)
        finally:
            if swapped:
                self.swap._swap_variables()


def backup_and_restore(backup_dir: str, callbacks) -> keras.callbacks.BackupAndRestore:
    """The run's ``BackupAndRestore`` (kept after fit); EMA-aware when ``callbacks`` swap EMA."""
    swaps = [c for c in callbacks if isinstance(c, keras.callbacks.SwapEMAWeights)]
    kwargs = {"double_checkpoint": True, "delete_checkpoint": False}
    if swaps:
        return _RawBackupAndRestore(swaps[0], backup_dir, **kwargs)
    return keras.callbacks.BackupAndRestore(backup_dir, **kwargs)
