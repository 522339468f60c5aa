"""Progress display: a live bar per epoch on a terminal (with the epoch's and the whole run's time to go,
and a status while data load and code compiles), plain lines elsewhere (one at least every
PIPED_EVERY seconds of a long epoch), nothing when quiet (warnings go to stderr even then)."""

from __future__ import annotations

import sys
import time

PIPED_EVERY = 30.0   # seconds between the progress lines of an epoch when the output is not a terminal


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
            if self.live:
                self.stream.write("\r\033[K")   # over a status line
            print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """A transient line on a terminal (what the run is doing before its first epoch); the next line
        replaces it."""
        if self.live:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()

    def start_epoch(self, epoch: int, batch: int) -> None:
        self._epoch = epoch
        self._batch = batch
        self._start = time.perf_counter()
        self._last = 0.0 if self.live else self._start   # piped: the first line PIPED_EVERY after the start

    def step(self, done: int, total: int, loss: float, accuracy: float | None) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if done < total and now - self._last < (0.1 if self.live else PIPED_EVERY):
            return
        self._last = now
        elapsed = now - self._start
        rate = done * self._batch / max(elapsed, 1e-9)
        eta = (total - done) * elapsed / max(done, 1)
        run_eta = eta + (self.epochs - self._epoch) * elapsed * total / max(done, 1)
        whole = f", run {_fmt_time(run_eta)}" if self._epoch < self.epochs else ""
        if not self.live:
            if done < total:
                print(f"  epoch {self._epoch}/{self.epochs}: step {done}/{total}  loss {loss:.4f}  "
                      f"{_fmt_rate(rate)} samples/s  ETA {_fmt_time(eta)}{whole}", file=self.stream, flush=True)
            return
        width = 24
        filled = int(width * done / total)
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        acc = f"  acc {accuracy * 100:5.1f}%" if accuracy is not None else ""
        line = (f"\repoch {self._epoch}/{self.epochs} [{bar[:width]}] {done}/{total}  loss {loss:.4f}{acc}  "
                f"{_fmt_rate(rate)} samples/s  ETA {_fmt_time(eta)}{whole} ")
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


def _fmt_time(seconds: float) -> str:
    """12s, 3m 05s, 1h 02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
