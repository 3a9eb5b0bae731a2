"""Progress of long steps that are not ``fit`` (file scans, record scans, export checks, evaluation, explanations).

One helper for the whole package, on ``tqdm``: a bar on stderr when stderr is
a terminal; otherwise (CI logs, pipes, tests) one log line when the stage
starts and one when it ends, so a log shows what ran and how long it took
without a line per item. Short stages (under ``min_items`` items) stay silent.

Example:
    >>> from kerasflow.progress import progress
    >>> for path in progress(paths, "scanning files", unit="file"):  # doctest: +SKIP
    ...     scan(path)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("kerasflow.progress")

T = TypeVar("T")
MIN_ITEMS = 200  # fewer items than this finish too fast to need a progress report


def is_terminal(stream=None) -> bool:
    """True when ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(
    items: Iterable[T],
    stage: str,
    *,
    total: int | None = None,
    unit: str = "item",
    min_items: int = MIN_ITEMS,
    stream=None,
) -> Iterator[T]:
    """Yield ``items`` while reporting the stage's progress.

    Args:
        items: what the stage works through.
        stage: what it does, e.g. ``"scanning image files"``.
        total: number of items (default ``len(items)`` when it has one).
        unit: what one item is (``file``, ``record``, ``batch``, ``image``).
        min_items: stages with fewer items report nothing.
        stream: where the bar goes (default stderr); it decides terminal or not.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Stage(stage, total=total, unit=unit, min_items=min_items, stream=stream) as reporter:
        for item in items:
            yield item
            reporter.update()


class Stage:
    """A stage reported by hand, for loops kerasflow does not own (``model.predict``'s batches).

    Example:
        >>> with Stage("evaluating test", total=12, unit="batch") as stage:  # doctest: +SKIP
        ...     model.predict(ds, callbacks=[...calls stage.update()...])
    """

    def __init__(
        self,
        stage: str,
        *,
        total: int | None = None,
        unit: str = "item",
        min_items: int = MIN_ITEMS,
        stream=None,
    ):
        self.stage, self.total, self.unit = stage, total, unit
        self.done = 0
        self._start = time.perf_counter()
        self._bar = None
        self._quiet = total is not None and total < min_items
        stream = sys.stderr if stream is None else stream
        if self._quiet:
            return
        if is_terminal(stream):
            from tqdm import tqdm

            self._bar = tqdm(desc=stage, total=total, unit=unit, file=stream, leave=True)
        else:
            count_text = f"{total:,} {unit}s" if total is not None else f"{unit}s"
            log.info("%s: %s ...", stage, count_text)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif not self._quiet:
            elapsed = time.perf_counter() - self._start
            log.debug("%s: %s %ss in %.1f s", self.stage, f"{self.done:,}", self.unit, elapsed)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
