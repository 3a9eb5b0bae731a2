"""The syntax of ``tune.space``: each dotted path of the run config with a value spec.

A ``tune.space`` maps a dotted path of the run config to one spec::

    space:
      model.name: {choice: [simple_cnn, resnet18]}
      model.params.width: {choice: [16, 32, 64], when: {model.name: simple_cnn}}
      compile.optimizer.learning_rate: {float: [1.0e-4, 1.0e-2], sampling: log}
      model.params.depth: {int: [1, 3]}
      data.augment.horizontal_flip: {boolean: false}
      compile.optimizer.name: {fixed: adam}

Types: ``choice`` (a list of numbers, strings or booleans), ``int`` and
``float`` (``[low, high]`` with optional ``step`` and ``sampling``: linear,
log or reverse_log), ``boolean`` (its value is the default) and ``fixed``.
``default`` sets the value tried first. ``when`` makes a parameter
conditional: it is active only while each named parent parameter (a
``choice``, ``boolean`` or ``fixed`` of the same space) takes one of the
listed values.

Plain Python below the config layer, so that the config schema checks a
space's syntax when it loads; applying values to run configs and declaring
them to Keras Tuner is :mod:`kerasflow.tuning.search_space`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from kerasflow.errors import ConfigError

TYPES = ("choice", "int", "float", "boolean", "fixed")
OPTIONS = ("default", "step", "sampling", "when", "ordered")
SAMPLINGS = ("linear", "log", "reverse_log")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_FORBIDDEN_ROOTS = ("tune", "tracking")


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: where it goes in the run config and which values it takes."""

    path: str
    kind: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    sampling: str = "linear"
    default: Any = None
    ordered: bool | None = None
    when: dict[str, tuple] = field(default_factory=dict)

    @property
    def first(self) -> Any:
        """The value tried first (the default, else the first choice or the low end)."""
        if self.default is not None:
            return self.default
        if self.kind == "choice":
            return self.values[0]
        if self.kind in ("int", "float"):
            return self.low
        if self.kind == "boolean":
            return False
        return self.values[0]

    @property
    def choices(self) -> tuple | None:
        """Every value a discrete parameter can take (None for int/float ranges)."""
        if self.kind in ("choice", "fixed"):
            return self.values
        if self.kind == "boolean":
            return (False, True)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The spec as written in a config (normalised)."""
        if self.kind in ("int", "float"):
            out: dict[str, Any] = {self.kind: [self.low, self.high]}
            if self.step is not None:
                out["step"] = self.step
            if self.sampling != "linear":
                out["sampling"] = self.sampling
        elif self.kind == "choice":
            out = {"choice": list(self.values)}
        elif self.kind == "boolean":
            out = {"boolean": bool(self.default)}
        else:
            out = {"fixed": self.values[0]}
        if self.default is not None and self.kind not in ("boolean",):
            out["default"] = self.default
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


def _bad(path: str, problem: str, spec: Any, hint: str = "") -> ConfigError:
    hint = f" {hint}" if hint else ""
    return ConfigError(f"tune.space[{path!r}]: {problem}.{hint} Received: {spec!r}")


def _scalar_type(value: Any) -> type | None:
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    if isinstance(value, str):
        return str
    return None


def _number(path: str, value: Any, spec: Any, integer: bool) -> float:
    kind = _scalar_type(value)
    if kind not in (int, float) or (integer and kind is not int):
        want = "integers" if integer else "numbers"
        raise _bad(path, f"bounds must be {want}", spec, "Write [low, high].")
    if not math.isfinite(value):
        raise _bad(path, "bounds must be finite", spec)
    return value


def _parse_one(path: str, spec: Any) -> ParamSpec:
    if not isinstance(path, str) or not _PATH.match(path):
        raise _bad(
            str(path),
            "the key must be a dotted path into the run config",
            spec,
            "Example: model.params.width.",
        )
    if path.split(".")[0] in _FORBIDDEN_ROOTS:
        raise _bad(path, f"the {path.split('.')[0]!r} section cannot be searched", spec)
    if not isinstance(spec, dict):
        raise _bad(
            path,
            "each parameter needs a mapping with one type key",
            spec,
            f"Use one of {', '.join(TYPES)}, e.g. {{choice: [16, 32]}}.",
        )
    kinds = [k for k in spec if k in TYPES]
    unknown = [k for k in spec if k not in TYPES and k not in OPTIONS]
    if unknown:
        raise _bad(
            path,
            f"unknown key(s) {unknown}",
            spec,
            f"Allowed: a type ({', '.join(TYPES)}) and {', '.join(OPTIONS)}.",
        )
    if len(kinds) != 1:
        raise _bad(path, "give exactly one type key", spec, f"Choose one of {', '.join(TYPES)}.")
    kind = kinds[0]
    raw = spec[kind]
    sampling = spec.get("sampling", "linear")
    if sampling not in SAMPLINGS:
        raise _bad(path, f"sampling must be one of {', '.join(SAMPLINGS)}", spec)
    if kind not in ("int", "float") and ("sampling" in spec or "step" in spec):
        raise _bad(path, "step and sampling apply to int and float only", spec)
    if "ordered" in spec and kind != "choice":
        raise _bad(path, "ordered applies to choice only", spec)
    default = spec.get("default")
    kwargs: dict[str, Any] = {"path": path, "kind": kind, "default": default}

    if kind == "choice":
        if not isinstance(raw, list) or not raw:
            raise _bad(path, "choice needs a non-empty list of values", spec)
        types = {_scalar_type(v) for v in raw}
        if None in types:
            raise _bad(path, "choice values must be numbers, strings or booleans", spec)
        if types == {int, float}:
            raw = [float(v) for v in raw]
            types = {float}
        if len(types) != 1:
            raise _bad(path, "choice values must all have one type", spec)
        if len(set(raw)) != len(raw):
            raise _bad(path, "choice values must be distinct", spec)
        if default is not None and default not in raw:
            raise _bad(path, "default must be one of the choices", spec)
        kwargs.update(values=tuple(raw), ordered=spec.get("ordered"))
    elif kind in ("int", "float"):
        if not isinstance(raw, list) or len(raw) != 2:
            raise _bad(path, f"{kind} needs [low, high]", spec)
        low, high = (_number(path, v, spec, kind == "int") for v in raw)
        if low > high or (kind == "float" and low == high):
            raise _bad(path, "low must be below high", spec)
        if sampling != "linear" and low <= 0:
            raise _bad(path, f"{sampling} sampling needs low > 0", spec)
        step = spec.get("step")
        if step is not None:
            step = _number(path, step, spec, kind == "int")
            if step <= 0:
                raise _bad(path, "step must be > 0", spec)
        if default is not None and not (
            _scalar_type(default) in (int, float) and low <= default <= high
        ):
            raise _bad(path, "default must lie in [low, high]", spec)
        if kind == "float":
            low, high = float(low), float(high)
        kwargs.update(low=low, high=high, step=step, sampling=sampling)
    elif kind == "boolean":
        if raw is not None and not isinstance(raw, bool):
            raise _bad(path, "boolean's value is its default: true or false", spec)
        kwargs.update(default=bool(raw) if default is None else default)
    else:  # fixed
        if _scalar_type(raw) is None:
            raise _bad(path, "fixed needs a number, string or boolean", spec)
        kwargs.update(values=(raw,))

    when = spec.get("when") or {}
    if not isinstance(when, dict):
        raise _bad(path, "when must map a parent path to its value(s)", spec)
    kwargs["when"] = {
        str(parent): tuple(vals if isinstance(vals, list) else [vals])
        for parent, vals in when.items()
    }
    return ParamSpec(**kwargs)


def parse_space(space: dict[str, Any] | None) -> list[ParamSpec]:
    """Check a ``tune.space`` mapping and return its parameters, parents before children.

    Raises:
        ConfigError: naming the path and what is wrong with its spec.

    Example:
        >>> [p.path for p in parse_space({"model.params.width": {"choice": [8, 16]}})]
        ['model.params.width']
    """
    if not space:
        return []
    if not isinstance(space, dict):
        raise ConfigError(
            "tune.space must map dotted config paths to specs, e.g. "
            f"model.params.width: {{choice: [16, 32]}}. Received: {space!r}"
        )
    specs = {path: _parse_one(path, spec) for path, spec in space.items()}
    for spec in specs.values():
        for parent, values in spec.when.items():
            if parent == spec.path:
                raise _bad(spec.path, "a parameter cannot depend on itself", space[spec.path])
            if parent not in specs:
                raise _bad(
                    spec.path,
                    f"when names {parent!r}, which is not a parameter of tune.space",
                    space[spec.path],
                    "Add the parent to tune.space (as a choice).",
                )
            allowed = specs[parent].choices
            if allowed is None:
                raise _bad(
                    spec.path,
                    f"when needs a choice, boolean or fixed parent; {parent!r} is a range",
                    space[spec.path],
                )
            missing = [v for v in values if v not in allowed]
            if missing:
                raise _bad(
                    spec.path,
                    f"when {parent!r} lists {missing}, which {parent!r} never takes "
                    f"(its values: {list(allowed)})",
                    space[spec.path],
                )
    return _parents_first(specs, space)


def _parents_first(specs: dict[str, ParamSpec], space: dict) -> list[ParamSpec]:
    ordered: list[ParamSpec] = []
    state: dict[str, str] = {}

    def visit(path: str, chain: tuple[str, ...]) -> None:
        if state.get(path) == "done":
            return
        if state.get(path) == "visiting":
            raise _bad(path, f"conditions form a cycle: {' -> '.join((*chain, path))}", space[path])
        state[path] = "visiting"
        for parent in specs[path].when:
            visit(parent, (*chain, path))
        state[path] = "done"
        ordered.append(specs[path])

    for path in specs:
        visit(path, ())
    return ordered


def is_active(spec: ParamSpec, values: dict[str, Any]) -> bool:
    """Whether ``spec``'s conditions hold for ``values`` (parents must be active too)."""
    return all(parent in values and values[parent] in ok for parent, ok in spec.when.items())


def active_values(specs: list[ParamSpec], values: dict[str, Any]) -> dict[str, Any]:
    """The searched values that apply: known paths whose conditions hold, in space order."""
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.path in values and is_active(spec, out):
            out[spec.path] = values[spec.path]
    return out


def first_values(specs: list[ParamSpec], force: ParamSpec | None = None) -> dict[str, Any]:
    """One assignment of first values in which ``force`` (if given) is active.

    Parents of ``force`` take the first value that its ``when`` allows.
    """
    wanted: dict[str, Any] = {}
    by_path = {s.path: s for s in specs}

    def require(spec: ParamSpec) -> None:
        for parent, ok in spec.when.items():
            if parent not in wanted:
                wanted[parent] = ok[0]
                require(by_path[parent])

    if force is not None:
        require(force)
    values: dict[str, Any] = {}
    for spec in specs:
        if is_active(spec, values):
            values[spec.path] = wanted.get(spec.path, spec.first)
    return values


def space_fingerprint(specs: list[ParamSpec]) -> str:
    """Canonical JSON of the space (what decides whether a saved search can resume)."""
    return json.dumps({s.path: s.to_dict() for s in specs}, sort_keys=True)
