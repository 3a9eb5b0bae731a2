"""Start a model from pretrained weights, copied layer by layer by name and shape.

``model.pretrained`` names where the weights come from; this module reads
them as data and copies them into a freshly built model:

* a ``.keras`` file: loaded with ``safe_mode=True`` (kerasflow's layers are
  registered serializable; nothing else runs);
* a ``.h5`` file in Keras' legacy layout (what ``keras.applications``
  downloads, and what ``model.save("x.h5")`` writes): layer names are stored;
* a Keras 3 ``.weights.h5`` file: it stores layers by class and position
  (``layers/conv2d_1``), not by name, so it is matched to the target model's
  layers by that same key, then by shape;
* ``imagenet``: the ``keras.applications`` weights of a ``keras_app`` model,
  downloaded once to the Keras cache (offline: a :class:`ConfigError` naming
  the expected file).

An MLflow model URI is resolved by the training layer, which downloads the
model's files and passes the ``.keras`` path here.

Matching tolerates a different model name: a ``simple_cnn`` layer
``simple_cnn_block1_conv1`` starts ``unet_encoder_block1_conv1`` of a U-Net
whose encoder is ``simple_cnn``. The pair of name prefixes that lines up the
most layers of equal shapes wins; every layer of the target is then
*loaded*, *new* (no layer of that name in the source) or *skipped* (with the
reason: other shapes, or a classifier head of other classes).

Example:
    >>> source = read_weights("digits.keras")
    >>> report = copy_weights(model, source)
    >>> report.loaded[:2]
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from kerasflow.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
WEIGHT_SUFFIXES = (".keras", ".h5", ".hdf5")
_FETCH_URL = re.compile(r"fetch failure on (\S+?):? ")


@dataclass
class SourceWeights:
    """Weights read from a pretrained source, by layer name.

    Attributes:
        layers: ``{layer name: [arrays in the layer's weight order]}``.
        origin: what they were read from (for messages and the run's params).
        class_names: the source model's classes, when known (a kerasflow model's contract).
        task: the source model's task, when known.
        positional: the names are Keras' positional keys (a Keras 3
            ``.weights.h5``), to be matched with :func:`positional_names` of the target.
    """

    layers: dict[str, list[np.ndarray]]
    origin: str
    class_names: list[str] | None = None
    task: str | None = None
    positional: bool = False


@dataclass
class TransferReport:
    """Which layers of the target model got pretrained weights, and why the others did not."""

    origin: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)
    prefixes: tuple[str, str] = ("", "")

    def summary(self) -> str:
        return (
            f"pretrained weights from {self.origin}: {len(self.loaded)} layers loaded, "
            f"{len(self.new)} new, {len(self.skipped)} skipped, "
            f"{len(self.unused)} source layers unused"
        )

    def as_params(self) -> dict[str, str | int]:
        """Counts and a short list for the run's params (the full lists go to an artifact)."""
        return {
            "pretrained.source": self.origin,
            "pretrained.loaded_layers": len(self.loaded),
            "pretrained.new_layers": len(self.new),
            "pretrained.skipped_layers": len(self.skipped),
            "pretrained.unused_source_layers": len(self.unused),
            "pretrained.new": _shortlist(self.new),
            "pretrained.skipped": _shortlist(list(self.skipped)),
        }

    def as_dict(self) -> dict:
        return {
            "source": self.origin,
            "source_prefix": self.prefixes[0],
            "target_prefix": self.prefixes[1],
            "loaded": self.loaded,
            "new": self.new,
            "skipped": self.skipped,
            "unused_source_layers": self.unused,
        }


def _shortlist(names: list[str], limit: int = 240) -> str:
    text = ",".join(names)
    return text if len(text) <= limit else text[: limit - 4] + ",..."


# ------------------------------------------------------------------ reading
def weighted_layers(model) -> list:
    """The layers of ``model`` that hold weights, nested models flattened, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def from_model(model, origin: str, class_names=None, task=None) -> SourceWeights:
    """The weights of an in-memory Keras model."""
    layers = {
        layer.name: [np.asarray(keras.ops.convert_to_numpy(w)) for w in layer.weights]
        for layer in weighted_layers(model)
    }
    return SourceWeights(layers, origin, class_names=class_names, task=task)


def read_weights(path: str | os.PathLike, class_names=None, task=None) -> SourceWeights:
    """Read the weights of a ``.keras``, legacy ``.h5`` or Keras 3 ``.weights.h5`` file.

    Raises:
        ConfigError: no such file, an unknown suffix, or a file that is not one of these.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained: no such file {path}. Give a .keras, .weights.h5 or .h5 "
            "weights file, an MLflow model URI (models:/NAME@alias, models:/NAME/VERSION, "
            "runs:/RUN_ID/model) or 'imagenet'."
        )
    if path.suffix == ".keras":
        return _read_keras_file(path, class_names, task)
    if path.suffix not in (".h5", ".hdf5"):
        raise ConfigError(
            f"model.pretrained: {path} is not a weights file. Use a .keras, .weights.h5 or "
            f".h5 file. Received: suffix {path.suffix!r}"
        )
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            if "layer_names" in group.attrs:
                layers = _read_legacy_group(group)
                return SourceWeights(layers, str(path), class_names, task)
            layers = _read_positional_group(f)
    except OSError as exc:
        raise ConfigError(f"model.pretrained: cannot read {path} as HDF5 ({exc}).") from exc
    return SourceWeights(layers, str(path), class_names, task, positional=True)


def _read_keras_file(path: Path, class_names, task) -> SourceWeights:
    from kerasflow.models import layers as _registered  # noqa: F401 - custom layers by name
    from kerasflow.models import schedules as _schedules  # noqa: F401

    if not zipfile.is_zipfile(path):
        raise ConfigError(f"model.pretrained: {path} is not a .keras archive (not a zip file).")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (ValueError, TypeError, OSError) as exc:
        raise ConfigError(
            f"model.pretrained: cannot load {path} safely ({exc}). A .keras file must hold "
            "a model of registered layers (no Lambda layers)."
        ) from exc
    return from_model(model, str(path), class_names, task)


def _decode(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_legacy_group(group) -> dict[str, list[np.ndarray]]:
    layers = {}
    for raw in group.attrs["layer_names"]:
        name = _decode(raw)
        sub = group[name]
        weight_names = [_decode(w) for w in sub.attrs.get("weight_names", [])]
        if weight_names:
            layers[name] = [np.asarray(sub[w]) for w in weight_names]
    return layers


def _read_positional_group(f) -> dict[str, list[np.ndarray]]:
    """``{"conv2d_1": [...]}`` from a Keras 3 ``.weights.h5`` (top-level layers with ``vars``)."""
    layers = {}
    root = f.get("layers")
    if root is None:
        raise ConfigError(
            f"model.pretrained: {f.filename} has neither a legacy 'layer_names' list nor a "
            "Keras 3 'layers' group; save it with model.save_weights('x.weights.h5') or "
            "model.save('x.keras')."
        )
    for key in root:
        group = root[key]
        if "vars" in group and len(group["vars"]):
            layers[key] = [np.asarray(group["vars"][str(i)]) for i in range(len(group["vars"]))]
    return layers


def _snake_case(name: str) -> str:
    """Keras' own ``to_snake_case`` (``Conv2D`` -> ``conv2d``), as its saving keys use it."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def positional_names(model) -> dict[str, str]:
    """``{layer name: Keras' saving key}`` for the layers of ``model`` (``conv2d``, ``conv2d_1``).

    Keras 3 saves a functional model's layers under the snake-cased class name
    plus a counter, in ``model.layers`` order; this is the same key.
    """
    used: dict[str, int] = {}
    keys = {}
    for layer in model.layers:
        base = _snake_case(layer.__class__.__name__)
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        keys[layer.name] = key
    return keys


# ----------------------------------------------------------------- imagenet
def keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps downloaded weights (``$KERAS_HOME/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_weights(model_name: str, params: dict, input_shape) -> SourceWeights:
    """The ``keras.applications`` ImageNet weights for a ``keras_app`` model.

    Raises:
        ConfigError: another family (the zoo's layouts differ from keras.applications),
            not 3 channels, or offline without the weights file in the Keras cache.
    """
    if model_name != "keras_app":
        raise ConfigError(
            f"model.pretrained: imagenet loads keras.applications weights, whose layer layout "
            f"only model.name: keras_app has (the zoo's {model_name!r} names its layers "
            "differently). Use model.name: keras_app with model.params.application: "
            "ResNet50 (or another keras.applications class), or a weights file of your own."
        )
    application = params.get("application", "ResNet50")
    factory = getattr(keras.applications, application, None)
    if factory is None:
        raise ConfigError(
            f"model.pretrained: imagenet: unknown keras.applications class {application!r} "
            "in model.params.application."
        )
    if input_shape[-1] != 3:
        raise ConfigError(
            "model.pretrained: imagenet weights need 3 input channels: set data.channels: 3. "
            f"Received: input shape {tuple(input_shape)}"
        )
    extra = {
        k: v
        for k, v in params.items()
        if k
        not in (
            "application",
            "weights",
            "include_top",
            "pooling",
            "dropout",
            "weight_decay",
            "trainable_backbone",
        )
    }
    try:
        app = factory(include_top=False, weights=IMAGENET, input_shape=tuple(input_shape), **extra)
    except Exception as exc:  # keras.utils.get_file raises a bare Exception offline
        if "fetch failure" not in str(exc):
            raise
        match = _FETCH_URL.search(str(exc))
        url = match.group(1) if match else "(the URL in the message below)"
        target = keras_cache_dir() / (url.rsplit("/", 1)[-1] if match else "<file>")
        raise ConfigError(
            f"model.pretrained: imagenet: cannot download the keras.applications.{application} "
            f"weights (this machine looks offline). Expected the file at {target}. Download "
            f"{url} where the internet is reachable and copy it to {target}, or set "
            "model.pretrained to the path of a local weights file (.h5, .weights.h5 or "
            f".keras). ({exc})"
        ) from exc
    return from_model(app, f"imagenet:{application}")


# ----------------------------------------------------------------- matching
def head_layers(model) -> list[str]:
    """The layers with weights nearest each output: the classifier (or task) head.

    Walks back from the outputs through layers without weights (activations,
    pooling) to the first layers that have them.
    """
    heads: list[str] = []
    seen = set()
    stack = [t._keras_history.operation for t in model.outputs]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.weights:
            heads.append(layer.name)
            continue
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                stack.append(tensor._keras_history.operation)
    return heads


def _shapes(arrays) -> list[tuple]:
    return [tuple(a.shape) for a in arrays]


def _split_common(source: str, target: str) -> tuple[str, str] | None:
    """``(source prefix, target prefix)`` around the longest common ``_``-bounded suffix."""
    n = 0
    limit = min(len(source), len(target))
    while n < limit and source[-1 - n] == target[-1 - n]:
        n += 1
    # Back off to a boundary: each prefix must be empty or end with "_".
    while n > 0:
        ps, pt = source[: len(source) - n], target[: len(target) - n]
        if (not ps or ps.endswith("_")) and (not pt or pt.endswith("_")):
            return ps, pt
        n -= 1
    return None


def best_prefixes(source: dict[str, list], target: dict[str, list]) -> tuple[str, str]:
    """The (source prefix, target prefix) pair that lines up the most layers of equal shapes.

    Args:
        source, target: ``{layer name: [weight shapes]}``.
    """
    votes: dict[tuple[str, str], int] = {}
    target_by_shape: dict[tuple, list[str]] = {}
    for name, shapes in target.items():
        target_by_shape.setdefault(tuple(shapes), []).append(name)
    for s_name, shapes in source.items():
        for t_name in target_by_shape.get(tuple(shapes), []):
            pair = _split_common(s_name, t_name)
            if pair is not None:
                votes[pair] = votes.get(pair, 0) + 1
    if not votes:
        return "", ""
    # Most votes; among equals the shortest prefixes (the plainest alignment).
    return max(votes, key=lambda p: (votes[p], -len(p[0]) - len(p[1])))


def copy_weights(
    model, source: SourceWeights, class_names: list[str] | None = None, task: str | None = None
) -> TransferReport:
    """Copy ``source`` into ``model`` layer by layer (by name, then shape); return the report.

    Args:
        class_names: the target's classes. When the source's classes (or task)
            are known and differ, the target's head layers (:func:`head_layers`)
            stay new even where shapes agree.

    Raises:
        ModelError: no layer of ``model`` matches a source layer by name and shape.
    """
    layers = weighted_layers(model)
    if source.positional:
        keys = positional_names(model)
        target = {keys.get(layer.name, layer.name): layer for layer in layers}
    else:
        target = {layer.name: layer for layer in layers}
    target_arrays = {k: [tuple(w.shape) for w in layer.weights] for k, layer in target.items()}
    source_shapes = {k: _shapes(v) for k, v in source.layers.items()}
    ps, pt = ("", "") if source.positional else best_prefixes(source_shapes, target_arrays)
    report = TransferReport(origin=source.origin, prefixes=(ps, pt))
    reset_head = set()
    differs = []
    known = source.class_names is not None and class_names is not None
    if known and list(source.class_names) != list(class_names):
        differs.append(f"classes {source.class_names} -> {list(class_names)}")
    source_task, target_task = source.task, task
    if source_task and target_task and source_task != target_task:
        # The source's head predicted something else (a classifier starting a U-Net).
        differs.append(f"task {source_task} -> {target_task}")
    if differs:
        reset_head = set(head_layers(model))
    used = set()
    for key, layer in target.items():
        name = layer.name
        s_key = ps + key[len(pt) :] if key.startswith(pt) else None
        if s_key is None or s_key not in source.layers:
            report.new.append(name)
            continue
        used.add(s_key)
        arrays = source.layers[s_key]
        if name in reset_head:
            report.skipped[name] = f"head rebuilt: {', '.join(differs)}"
            continue
        want = [tuple(w.shape) for w in layer.weights]
        if _shapes(arrays) != want:
            report.skipped[name] = f"shape {_shapes(arrays)} in the source, {want} here"
            continue
        layer.set_weights(arrays)
        report.loaded.append(name)
    report.unused = sorted(set(source.layers) - used)
    if not report.loaded:
        raise ModelError(
            f"model.pretrained: no layer of {model.name!r} matches a layer of {source.origin} "
            f"by name and shape, so nothing would be loaded. Source layers: "
            f"{_shortlist(list(source.layers), 200)}; this model's: "
            f"{_shortlist([layer.name for layer in layers], 200)}. Start from a model of the "
            "same family (or a classifier whose backbone this model uses as its encoder)."
        )
    log.info("%s", report.summary())
    log.info("pretrained layers loaded: %s", ", ".join(report.loaded))
    log.info("pretrained layers new: %s", ", ".join(report.new) or "-")
    for name, why in report.skipped.items():
        log.info("pretrained layer skipped: %s (%s)", name, why)
    return report
