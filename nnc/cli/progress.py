"""Progress display: a live bar per epoch on a terminal, plain lines elsewhere, nothing when quiet
(warnings go to stderr even then)."""

from __future__ import annotations

import sys
import time


def _fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


class Progress:
    def __init__(self, epochs: int, quiet: bool = False, stream=None):
        self.stream = stream or sys.stdout
        self.epochs = epochs
        self.quiet = quiet
        self.live = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start = 0.0
        self._last = 0.0
        self._batch = 1

    def print(self, text: str = "") -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, batch: int) -> None:
        self._epoch = epoch
        self._batch = batch
        self._start = time.perf_counter()
        self._last = 0.0

    def step(self, done: int, total: int, loss: float, accuracy: float | None) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        elapsed = now - self._start
        rate = done * self._batch / max(elapsed, 1e-9)
        eta = (total - done) * elapsed / max(done, 1)
        width = 24
        filled = int(width * done / total)
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        acc = f"  acc {accuracy * 100:5.1f}%" if accuracy is not None else ""
        line = (f"\repoch {self._epoch}/{self.epochs} [{bar[:width]}] {done}/{total}  loss {loss:.4f}{acc}  "
                f"{_fmt_rate(rate)} samples/s  ETA {eta:.0f}s ")
        self.stream.write(line)
        self.stream.flush()

    def end_epoch(self, summary: str) -> None:
        if self.quiet:
            return
        if self.live:
            self.stream.write("\r\033[K")
        print(summary, file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """A warning on stderr, on a line of its own even in the middle of a live bar."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
        print(text, file=sys.stderr, flush=True)
