"""The model zoo as table rows: name, task, parameters and MACs.

Counts come from the built graph (``model.count_params()`` and
:func:`~kerasflow.models.flops.count_macs`), never from typed-in numbers.
"""

from __future__ import annotations

from kerasflow.models.registry import build, get_spec, names

TABLE_INPUT_SHAPE = (224, 224, 3)
TABLE_NUM_CLASSES = 1000


def model_row(
    name: str,
    input_shape=TABLE_INPUT_SHAPE,
    num_classes: int = TABLE_NUM_CLASSES,
    **params,
) -> dict:
    """Build ``name`` once and return its ``name``, ``task``, ``params`` and ``macs``."""
    import keras

    from kerasflow.models.flops import count_macs

    model = build(name, input_shape, num_classes, **params)
    row = {
        "name": name,
        "kind": get_spec(name).kind,
        "params": int(model.count_params()),
        "macs": count_macs(model),
    }
    del model
    keras.backend.clear_session()
    return row


def model_table(
    model_names=None, input_shape=TABLE_INPUT_SHAPE, num_classes: int = TABLE_NUM_CLASSES
) -> list[dict]:
    """One :func:`model_row` per registered name (or per name in ``model_names``).

    Example:
        >>> rows = model_table(["resnet50"])
        >>> rows[0]["params"]
        25636712
    """
    return [model_row(n, input_shape, num_classes) for n in (model_names or names())]


def format_count(value: int) -> str:
    """``25636712`` -> ``"25.64M"``; ``4089184256`` -> ``"4.09G"``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)
