"""Training-input throughput of kerasflow pipelines against common alternatives.

Generates JPEGs (500x375, 5 classes) in a temp folder and measures the
steady-state images/s of a training pipeline at 224x224, batch 64, with a
random horizontal flip, for:

* kerasflow without cache, and with an in-memory cache (epochs 2+);
* ``keras.utils.image_dataset_from_directory`` + the same flip;
* a hand-written tf.data pipeline (list_files -> parallel map
  decode+resize+flip -> batch -> prefetch);
* a Python generator decoding with Pillow through ``Dataset.from_generator``
  (and, for reference, the same generator handing over 0..1 floats).

Every contender hands over unscaled pixels in its natural dtype (kerasflow and
the Pillow generator uint8, the resizing tf.data pipelines float32 0..255) for a
model whose first layer scales them, as kerasflow's models do. Contenders
alternate within each repeat, in a fresh random order (so load on a shared
machine hits all of them alike); the medians are reported. A pass is timed from
creating its iterator to its last batch; freeing the iterator is reported apart
(``iterator_teardown_ms``, see :func:`epoch_rate`). The input stall is
the step time of a small model's ``fit`` (``Rescaling`` first, as in kerasflow
models) fed by the cached kerasflow pipeline (repeated, as ``kerasflow train``
feeds it) divided by the same ``fit`` fed by the same batches as in-memory
tensors.

Prints one JSON object. ``--quick`` runs in under 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SIZE = (224, 224)
BATCH = 64
CLASSES = 5


def make_jpegs(root: Path, count: int, seed: int = 0) -> None:
    """``count`` 500x375 JPEGs with smooth random content, ``CLASSES`` subfolders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for i in range(count):
        folder = root / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(0.005, 0.05, size=6)
        img = np.stack(
            [
                127 + 100 * np.sin(xx * f[0] + yy * f[1] + i),
                127 + 100 * np.sin(xx * f[2] - yy * f[3]),
                127 + 100 * np.cos(xx * f[4] + yy * f[5]),
            ],
            axis=-1,
        )
        img += rng.normal(0, 12, size=img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            folder / f"img_{i:05d}.jpg", quality=90
        )


def epoch_rate(ds, cpu: list | None = None, teardown: list | None = None) -> float:
    """Images per second over one whole pass, from creating the iterator to its last batch.

    Whole passes only: a generator stopped mid-pass keeps its prefetch thread busy
    into the next contender's timing.

    Freeing the iterator is timed apart (appended to ``teardown``, in seconds): it
    often waits until 1.27, 2.55 or 5.11 s after the iterator started (10 x
    (2^k - 1) ms, a doubling timer; with tf.data's autotuning off it never waited
    in 22 tries), and that wait is not input throughput. A ``for`` loop over the
    dataset frees its iterator before the clock stops; timed that way, passes came
    out at exactly 1,572, 786 or 392 images/s whenever it waited (2,000 images in
    1.27, 2.55 or 5.11 s), which the figures up to 2026-11-25 took for a slow
    machine. kerasflow's training repeats its dataset, so one iterator lives for
    the whole fit.

    With ``cpu``, also appends the process CPU seconds per image of the pass.
    """
    n = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    iterator = iter(ds)
    for x, _ in iterator:
        n += int(x.shape[0])
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append((time.process_time() - cpu_start) / n)
    freed = time.perf_counter()
    del iterator
    if teardown is not None:
        teardown.append(time.perf_counter() - freed)
    return n / elapsed


def kerasflow_dataset(root: Path, cache: bool):
    from kerasflow.config import build_config
    from kerasflow.pipelines import prepare

    cfg = build_config(
        {
            "data": {
                "source": str(root),
                "image_size": list(SIZE),
                "channels": 3,
                "batch_size": BATCH,
                "cache": cache,
                "split": {"train": 1.0, "validation": 0.0, "test": 0.0},
                "augment": {"horizontal_flip": True},
            }
        }
    ).data
    return prepare(cfg, seed=0).dataset("train")


def idfd_dataset(root: Path):
    import keras
    import tensorflow as tf

    flip = keras.layers.RandomFlip("horizontal", seed=0)
    ds = keras.utils.image_dataset_from_directory(
        str(root), image_size=SIZE, batch_size=BATCH, shuffle=True, seed=0, verbose=False
    )
    ds = ds.map(lambda x, y: (flip(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def handwritten_dataset(root: Path):
    import tensorflow as tf

    names = sorted(p.name for p in root.iterdir())
    table = tf.constant(names)

    def load(path):
        label = tf.argmax(tf.cast(tf.equal(table, tf.strings.split(path, os.sep)[-2]), tf.int32))
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, SIZE)
        return tf.image.random_flip_left_right(image), label

    ds = tf.data.Dataset.list_files(str(root / "*" / "*.jpg"), shuffle=True, seed=0)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def generator_dataset(root: Path, unit_floats: bool = False):
    """Pillow in a Python generator; uint8 pixels, or 0..1 float32 with ``unit_floats``.

    The uint8 one hands over what kerasflow does (the ratio targets use it); the
    float one is the common tutorial form for a model without a scaling layer
    (what this benchmark measured before kerasflow moved scaling into the model).
    """
    import tensorflow as tf
    from PIL import Image

    names = sorted(p.name for p in root.iterdir())
    files = sorted(root.glob("*/*.jpg"))
    rng = np.random.default_rng(0)

    def gen():
        for i in rng.permutation(len(files)):
            path = files[i]
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB").resize(SIZE[::-1], Image.BILINEAR))
            if unit_floats:
                arr = arr.astype(np.float32) / 255.0
            if rng.random() < 0.5:
                arr = arr[:, ::-1]
            yield arr, names.index(path.parent.name)

    sig = (
        tf.TensorSpec((*SIZE, 3), tf.float32 if unit_floats else tf.uint8),
        tf.TensorSpec((), tf.int64),
    )
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def input_stall(root: Path, steps: int, chunks: int, chunk_epochs: int = 3) -> dict:
    """fit step time fed by the cached kerasflow pipeline / fed by in-memory tensors.

    Fed the way ``kerasflow train`` feeds ``fit``: the dataset repeated, with
    ``steps_per_epoch``, so the next epoch's first batches are prepared while
    the current one ends. The two models alternate in chunks of
    ``chunk_epochs`` epochs (so machine load hits both alike); each chunk is a
    new ``fit`` call, whose first epoch (iterator start-up, which a real run
    pays once) is left out.
    """
    import keras
    import tensorflow as tf

    ds = kerasflow_dataset(root, cache=True)
    xs, ys = [], []
    for x, y in ds.take(steps):
        xs.append(x.numpy())
        ys.append(y.numpy())
    # The baseline: the same batches as tensors already in memory (a cached
    # dataset of whole batches hands them over without copying), so its step
    # time is the model's alone. Numpy arrays would add Keras' own slicing.
    mem = tf.data.Dataset.from_tensor_slices((np.concatenate(xs), np.concatenate(ys)))
    mem = mem.batch(BATCH).cache()
    for _ in mem:  # fill the cache
        pass

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((*SIZE, 3))
        h = keras.layers.Rescaling(1 / 255)(inputs)  # as kerasflow models scale their pixels
        h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
        h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
        h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        m = keras.Model(inputs, keras.layers.Dense(CLASSES)(h))
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    pipe_times, mem_times = [], []
    m1, m2 = model(), model()
    for c in range(chunks + 1):  # chunk 0 is warm-up (tracing, cache fill)
        start, end = c * chunk_epochs, (c + 1) * chunk_epochs
        pipe_t, mem_t = Timer(), Timer()
        m1.fit(ds.repeat(), steps_per_epoch=steps, epochs=end, initial_epoch=start,
               verbose=0, callbacks=[pipe_t])  # fmt: skip
        m2.fit(mem.repeat(), steps_per_epoch=steps, epochs=end, initial_epoch=start,
               verbose=0, callbacks=[mem_t])  # fmt: skip
        if c:
            pipe_times += pipe_t.times[1:]
            mem_times += mem_t.times[1:]
    pipe = statistics.median(pipe_times) / steps
    mem = statistics.median(mem_times) / steps
    return {
        "fit_step_s_kerasflow": pipe,
        "fit_step_s_in_memory": mem,
        "input_stall_ratio": pipe / mem,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats (<3 min)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    count = args.images or (1000 if args.quick else 2000)
    repeats = args.repeats or (5 if args.quick else 11)

    import tensorflow as tf

    t0 = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every number
    with tempfile.TemporaryDirectory(prefix="kf_bench_") as tmp:
        root = Path(tmp) / "images"
        make_jpegs(root, count)
        contenders = {
            "kerasflow": kerasflow_dataset(root, cache=False),
            "kerasflow_cached": kerasflow_dataset(root, cache=True),
            "image_dataset_from_directory": idfd_dataset(root),
            "handwritten": handwritten_dataset(root),
            "python_generator": generator_dataset(root),
            "python_generator_float": generator_dataset(root, unit_floats=True),
        }
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        cpu: dict[str, list[float]] = {k: [] for k in contenders}
        teardown: dict[str, list[float]] = {k: [] for k in contenders}
        for ds in contenders.values():  # warm-up; fills the kerasflow cache
            epoch_rate(ds)
        names = list(contenders)
        order_rng = np.random.default_rng(1)
        for _ in range(repeats):
            # A fresh random order each repeat. (Rotating one fixed order keeps every
            # contender's predecessor the same, and the one after the Pillow generator
            # measured ~10% slower.)
            for name in order_rng.permutation(names):
                rates[name].append(epoch_rate(contenders[name], cpu[name], teardown[name]))
        med = {k: statistics.median(v) for k, v in rates.items()}
        stall = input_stall(root, steps=8 if args.quick else 12, chunks=3 if args.quick else 5)
    out = {
        "images": count,
        "image_size": list(SIZE),
        "batch_size": BATCH,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "load_average_1m_start_end": [load_start, round(os.getloadavg()[0], 2)],
        "tensorflow": tf.__version__,
        "images_per_s": {k: round(v, 1) for k, v in med.items()},
        "images_per_s_all": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        # Process CPU per image (median): unlike images/s, it does not move when the
        # machine lends this process less of a core for a while.
        "cpu_ms_per_image": {k: round(1000 * statistics.median(v), 3) for k, v in cpu.items()},
        # Freeing each pass's iterator, timed apart from the pass (see epoch_rate).
        "iterator_teardown_ms": {k: [round(1000 * x) for x in v] for k, v in teardown.items()},
        "ratio_vs_handwritten": med["kerasflow"] / med["handwritten"],
        "ratio_vs_image_dataset_from_directory": med["kerasflow"]
        / med["image_dataset_from_directory"],
        "ratio_cached_vs_image_dataset_from_directory": med["kerasflow_cached"]
        / med["image_dataset_from_directory"],
        "ratio_vs_python_generator": med["kerasflow"] / med["python_generator"],
        "ratio_cached_vs_python_generator": med["kerasflow_cached"] / med["python_generator"],
        "ratio_vs_python_generator_float": med["kerasflow"] / med["python_generator_float"],
        "cpu_ratio_handwritten_vs_kerasflow": statistics.median(cpu["handwritten"])
        / statistics.median(cpu["kerasflow"]),
        **stall,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for k, v in out.items():
        if k.startswith(("ratio_", "cpu_ratio", "input_stall", "fit_step")):
            out[k] = round(v, 4)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
