"""quantgate.progress: items done / total, tokens/s and an ETA; lines at the sink's pace (in
place on a terminal, every 30 s in a log), one final line; silent without a sink."""

from __future__ import annotations

from quantgate.progress import Progress, Sink, set_sink, track


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_every_30_s_and_a_final_one():
    clock, lines = Clock(), []
    progress = Progress(
        "s-t-fp8", 100, Sink(lambda line, final: lines.append((line, final))), clock=clock
    )
    for _ in range(50):  # 50 answers over 25 s, 10 tokens each
        clock.now += 0.5
        progress.update(tokens=10)
    clock.now += 10.0  # 35 s in
    progress.update(tokens=10)
    progress.close()
    progress.close()  # once
    assert [final for _, final in lines] == [False, False, True]
    assert lines[0][0] == "s-t-fp8: 1/100 items, 20.0 tok/s, 2.00 items/s, ETA 0:00:50"
    assert lines[1][0] == "s-t-fp8: 51/100 items, 14.6 tok/s, 1.46 items/s, ETA 0:00:34"
    assert lines[2][0] == "s-t-fp8: 51/100 items, 14.6 tok/s, 1.46 items/s, done in 0:00:35"


def test_a_terminal_is_refreshed_at_most_twice_a_second():
    clock, lines = Clock(), []
    progress = Progress(
        "c", 10, Sink(lambda line, final: lines.append(line), interactive=True), clock=clock
    )
    for _ in range(10):
        clock.now += 0.1
        progress.update()
    assert len(lines) == 2  # at 0.1 s and at 0.6 s: the others fall inside the half-second
    progress.close()
    assert lines[-1].startswith("c: 10/10 items") and "tok/s" not in lines[-1]


def test_without_a_sink_nothing_is_written_and_nothing_breaks():
    set_sink(None)
    with track("quiet", 3) as progress:
        progress.update(tokens=5)
    assert progress.done == 1 and progress.tokens == 5


def test_track_uses_the_installed_sink():
    lines = []
    set_sink(Sink(lambda line, final: lines.append(line)))
    try:
        with track("case", 2) as progress:
            progress.update()
            progress.update()
    finally:
        set_sink(None)
    assert lines[0].startswith("case: 1/2") and lines[-1].startswith("case: 2/2")


def test_a_log_gets_lines_while_no_item_finishes_and_close_stops_the_timer():
    """Off a terminal a long generation still shows it is alive: a timer writes the line every
    ``every`` seconds when no update came in between; close() stops it (no line after)."""
    import threading

    lines, three = [], threading.Event()

    def write(line, final):
        lines.append((line, final))
        if len(lines) >= 3:
            three.set()

    progress = Progress("slow-case", 10, Sink(write, every=0.05))
    progress.update(tokens=4)  # the first line; then nothing finishes
    assert three.wait(timeout=5), lines  # two more lines came from the timer alone
    progress.close()
    assert not progress._timer.is_alive()
    written = len(lines)
    assert lines[-1][1] is True and lines[-1][0].startswith("slow-case: 1/10 items")
    assert all(line.startswith("slow-case: 1/10 items") for line, _ in lines)
    threading.Event().wait(0.2)  # four timer periods: nothing is written after close
    assert len(lines) == written


def test_a_terminal_sink_starts_no_timer():
    progress = Progress("c", 10, Sink(lambda line, final: None, interactive=True, every=0.01))
    assert progress._timer is None
    progress.close()
