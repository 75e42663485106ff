"""Progress for long loops: a tqdm bar on a terminal, plain lines elsewhere.

In a log file, under nohup or in CI, a tqdm bar is a stream of carriage returns (tens of KB per training epoch).
Without a terminal, `bar` instead prints one line (done / total, rate, time left) every `PLAIN_INTERVAL`
seconds and, if it printed any, one when the loop ends; loops shorter than that stay silent.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO

from tqdm import tqdm

PLAIN_INTERVAL = 8.0
"""Seconds between plain progress lines (a line at least every 10 s for loops whose steps take under 2 s)."""


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        enabled: bool = True, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL):
    """Wrap `iterable` (or count `update()` calls up to `total`) with progress suited to where stderr goes.

    Returns an object with tqdm's iteration, `update(n)`, `set_postfix(**kw)` and `close()`.
    """
    stream = stream or sys.stderr
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=stream)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, stream=stream, interval=interval)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PlainProgress:
    """Line-per-interval progress for logs: `desc: 120/1009 (12%), 45.1 img/s, 0:19 left`."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str, stream: TextIO,
                 interval: float) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream, self.interval = stream, interval
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def set_postfix(self, **kw) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.last > self.start:  # a loop that printed nothing (shorter than an interval) stays silent
                self._print(time.monotonic(), final=True)

    def line(self, now: float | None = None, final: bool = False) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {done}" if self.desc else done, f"{rate:.1f} {self.unit}/s"]
        if final:
            parts.append(f"done in {_clock(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"{_clock((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _print(self, now: float, final: bool = False) -> None:
        print(self.line(now, final), file=self.stream, flush=True)
