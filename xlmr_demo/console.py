"""The demo's output: step headers with timings, one-line messages and errors, plain-text tables."""

from __future__ import annotations

import sys
import time

from .settings import PROG


class Progress:
    """Step headers with timings, flushed at once so progress shows in pipes and CI logs."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.start = time.perf_counter()
        self._step_start = self.start

    def header(self, title: str) -> None:
        self.step += 1
        self._step_start = time.perf_counter()
        say(f"\n[{self.step}/{self.total}] {title}")

    def done(self, what: str = "done") -> float:
        elapsed = time.perf_counter() - self._step_start
        say(f"    {what} in {elapsed:.1f} s")
        return elapsed

    def total_seconds(self) -> float:
        return time.perf_counter() - self.start


def say(message: str = "") -> None:
    print(message, flush=True)


def fail(message: str) -> int:
    """Print ``message`` as the one-line usage / environment error; returns exit code 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 2


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
