import keras
import numpy as np
import pytest

from kerasflow.config import build_config
from kerasflow.errors import ConfigError
from kerasflow.models.schedules import EpochSchedule
from kerasflow.training.compile import build_optimizer, build_schedule


def _lr(schedule, step):
    return float(schedule(np.float32(step)))


def test_constant_without_warmup_is_a_float():
    cfg = build_config({}, ["compile.optimizer.learning_rate=0.01"])
    assert build_schedule(cfg.compile, 10, 5) == 0.01


def test_cosine_with_warmup_values():
    cfg = build_config(
        {},
        [
            "compile.schedule.name=cosine",
            "compile.schedule.warmup_epochs=1",
            "compile.optimizer.learning_rate=0.1",
        ],
    )
    s = build_schedule(cfg.compile, steps_per_epoch=10, epochs=11)
    assert _lr(s, 0) == pytest.approx(0.01)  # (0 + 1) / 10 of the peak
    assert _lr(s, 9) == pytest.approx(0.1)
    assert _lr(s, 10) == pytest.approx(0.1)
    assert _lr(s, 60) == pytest.approx(0.05, abs=1e-6)  # half way through the decay
    assert _lr(s, 110) == pytest.approx(0.0, abs=1e-7)


def test_step_and_exponential_decay():
    step = EpochSchedule(
        "step", 1.0, total_steps=100, steps_per_epoch=10, step_epochs=[3, 6], decay_rate=0.1
    )
    assert [_lr(step, s) for s in (0, 29, 30, 59, 60)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    exp = EpochSchedule(
        "exponential", 1.0, total_steps=100, steps_per_epoch=10, decay_rate=0.5, decay_epochs=2
    )
    assert _lr(exp, 20) == pytest.approx(0.5) and _lr(exp, 40) == pytest.approx(0.25)


def test_one_cycle_peaks_then_anneals():
    s = EpochSchedule("one_cycle", 1.0, total_steps=100, steps_per_epoch=10)
    values = [_lr(s, i) for i in range(100)]
    assert int(np.argmax(values)) in (29, 30)
    assert values[0] == pytest.approx(0.04) and values[-1] < 0.01


def test_schedule_serializes():
    s = EpochSchedule("cosine", 0.1, total_steps=50, steps_per_epoch=5, warmup_epochs=1)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert _lr(again, 17) == pytest.approx(_lr(s, 17))


@pytest.mark.parametrize(
    "name,cls,extra",
    [
        ("sgd", keras.optimizers.SGD, {}),
        ("momentum", keras.optimizers.SGD, {"momentum": 0.9}),
        ("nesterov", keras.optimizers.SGD, {"nesterov": True}),
        ("adam", keras.optimizers.Adam, {}),
        ("adamw", keras.optimizers.AdamW, {}),
        ("rmsprop", keras.optimizers.RMSprop, {}),
    ],
)
def test_optimizers_by_name(name, cls, extra):
    cfg = build_config({}, [f"compile.optimizer.name={name}", "compile.optimizer.clipnorm=1.0"])
    opt = build_optimizer(cfg.compile, 10, 2)
    assert isinstance(opt, cls) and opt.clipnorm == 1.0
    for key, value in extra.items():
        assert getattr(opt, key) == value


def test_warmup_longer_than_run_is_rejected():
    cfg = build_config({}, ["compile.schedule.name=cosine", "compile.schedule.warmup_epochs=5"])
    with pytest.raises(ConfigError, match="warmup_epochs"):
        build_schedule(cfg.compile, 10, 5)
