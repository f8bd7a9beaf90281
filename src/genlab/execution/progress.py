"""The experience of a long sweep: one sweep-level progress line and a log file in ``--out``.

Whatever the executor, the orchestrator hears of each run as it ends; :class:`SweepProgress`
counts runs done, failed and left, and estimates the time left from the runs trained so far
(elapsed time per trained run, times the runs still to train: with several workers this is
the sweep's throughput, not one run's length). On a terminal the line is a bar redrawn in
place; elsewhere (CI, a notebook's stderr, a file) it is printed after each run. Every event
also goes to ``OUT/genlab.log`` with a UTC time stamp, so a sweep on a cluster or in the
background can be followed with ``tail -f``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from genlab.errors import GenlabError

#: the sweep's log, inside the results folder
LOG_NAME = "genlab.log"


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h10m``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Log:
    """Appends time-stamped lines to ``OUT/genlab.log``; never follows a planted symlink."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOG_NAME

    def write(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError:
            if self.path.is_symlink():
                raise GenlabError(f"{self.path} is a symbolic link; genlab writes only its own "
                                  "log: remove the link") from None
            raise
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")


class SweepProgress:
    """Runs done / failed / left, elapsed time and ETA for one sweep.

    ``total``: the sweep's runs; ``todo``: those still to train (the rest are already in the
    store). ``quiet``: print nothing (the log is still written). ``bar``: redraw one line in
    place (a terminal) instead of printing a line per run.
    """

    def __init__(self, total: int, todo: int, log: Log | None, *, quiet: bool = False,
                 bar: bool | None = None) -> None:
        self.total, self.todo = total, todo
        self.done = self.failed = self.skipped = 0
        self.trained = 0  # runs that trained in this sweep (they time the ETA)
        self.start = time.monotonic()
        self.log = log
        self.quiet = quiet
        self.bar = (sys.stderr.isatty() and not os.environ.get("CI")) if bar is None else bar

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed - self.skipped

    def eta(self) -> float | None:
        """Seconds left, from the runs trained so far; None before the first one."""
        if not self.trained:
            return None
        still = max(self.todo - self.trained, 0)
        return (time.monotonic() - self.start) / self.trained * still

    def status(self) -> str:
        """``sweep: 3/12 done, 1 failed, 8 left, 2m10s elapsed, ETA 6m40s``."""
        eta = self.eta()
        parts = [f"{self.done + self.skipped}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts += [f"{self.left} left", f"{duration(time.monotonic() - self.start)} elapsed"]
        if self.left:
            parts.append(f"ETA {duration(eta)}" if eta is not None else "ETA after the first run")
        return "sweep: " + ", ".join(parts)

    def started(self, line: str) -> None:
        """The sweep begins (``line`` says what and how)."""
        self._log(line)

    def ended(self, tag: str, outcome: str, *, trained: bool, failed: bool) -> None:
        """One run ended: ``outcome`` as printed; ``trained`` False for a run already done."""
        if failed:
            self.failed += 1
        elif trained:
            self.done += 1
        else:
            self.skipped += 1
        if trained or failed:
            self.trained += 1
        self._log(f"{tag}: {outcome}")
        self._say(f"{tag}: {outcome}")
        if self.left or self.total > 1:
            self._say(self.status(), status=True)

    def finished(self) -> None:
        """The sweep's runs are over."""
        line = (f"sweep finished: {self.done} trained, {self.skipped} already done, "
                f"{self.failed} failed in {duration(time.monotonic() - self.start)}")
        self._log(line)
        if self.bar and not self.quiet:
            print(file=sys.stderr, flush=True)  # leave the bar's last state on its own line

    def note(self, line: str) -> None:
        """A line for the log and the terminal (a task, a choice the executor made)."""
        self._log(line)
        self._say(line)

    def _log(self, line: str) -> None:
        if self.log is not None:
            self.log.write(line)

    def _say(self, line: str, status: bool = False) -> None:
        if self.quiet:
            return
        if self.bar:  # one line redrawn in place; run lines scroll above it
            end = "" if status else "\n"
            print(f"\r\033[K{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
