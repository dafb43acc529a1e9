"""Progress of long generations: items done / total, tokens/s and an ETA per case.

    with track("qwen3-32b-math500-fp8", total=500) as progress:   # a no-op without a sink
        for answer in answers:
            progress.update(tokens=answer.completion_tokens)

The library only measures; where lines go is the caller's choice (:func:`set_sink`): the pytest
plugin writes them past output capture, refreshed in place on a terminal (at most twice a
second) and as plain lines every 30 s elsewhere (CI logs), and installs no sink under ``-q``.
Off a terminal a timer thread keeps the lines coming when no item finishes for a while (a long
generation still shows it is alive); :meth:`Progress.close` stops it.
quantgate's chat client (LiveBench, code runners) and its lm-eval model (lm-eval tasks) report
here, so every generating case shows progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sink:
    """Where progress lines go: ``write(line, final)``; ``interactive`` lines replace each other
    (a terminal), others are appended (a log)."""

    write: Callable[[str, bool], None]
    interactive: bool = False
    every: float | None = None  # seconds between lines; default 0.5 interactive, else 30


_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    """Install (or remove, with None) the process's progress sink."""
    global _sink
    _sink = sink


def track(label: str, total: int, *, clock: Callable[[], float] = time.monotonic) -> Progress:
    """A :class:`Progress` for ``total`` items writing to the installed sink (silent without)."""
    return Progress(label, total, _sink, clock=clock)


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        sink: Sink | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.sink, self.clock = label, max(0, total), sink, clock
        self.done, self.tokens = 0, 0
        self.started = clock()
        self._last: float | None = None
        self._lock = threading.Lock()  # updates (client threads) and the timer thread
        every = sink.every if sink and sink.every is not None else None
        self.every = every if every is not None else (0.5 if sink and sink.interactive else 30.0)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if sink is not None and not sink.interactive and self.total:
            self._timer = threading.Thread(target=self._tick, name=f"progress {label}", daemon=True)
            self._timer.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1, *, tokens: int | None = None) -> None:
        with self._lock:
            self.done += n
            self.tokens += tokens or 0
            now = self.clock()
            if self.sink is not None and (self._last is None or now - self._last >= self.every):
                self._last = now
                self.sink.write(self.line(now), False)

    def close(self) -> None:
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        with self._lock:
            if self.sink is not None and self.total:
                self.sink.write(self.line(self.clock(), final=True), True)
            self.sink = None  # closing twice writes once

    def _tick(self) -> None:
        """The timer thread: a line whenever ``every`` seconds passed without one (no item
        finished in between), until :meth:`close`."""
        wait = self.every
        while not self._stop.wait(wait):
            with self._lock:
                if self.sink is None:
                    return
                now = self.clock()
                wait = (self.started if self._last is None else self._last) + self.every - now
                if wait <= 0:
                    self._last, wait = now, self.every
                    try:
                        self.sink.write(self.line(now), False)
                    except Exception:  # a progress line is never worth a thread's traceback
                        return

    def line(self, now: float | None = None, *, final: bool = False) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        parts = [f"{self.label}: {self.done}/{self.total} items"]
        if self.tokens:
            parts.append(f"{self.tokens / elapsed:.1f} tok/s")
        parts.append(f"{self.done / elapsed:.2f} items/s")
        if final:
            parts.append(f"done in {_clock(elapsed)}")
        elif self.done:
            parts.append(f"ETA {_clock(elapsed / self.done * (self.total - self.done))}")
        return ", ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
