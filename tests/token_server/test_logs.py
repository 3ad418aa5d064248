"""The log writer thread: every queued line is written, in order, and nothing it meets (a record
that does not format, a stream that never drains) ends it or keeps the process from exiting."""

from __future__ import annotations

import io
import logging
import threading
import time

from token_server.logs import _Formatter, _LineWriter


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("token_server.test", logging.INFO, __file__, 1, msg, args, None)


def test_every_queued_line_is_written_in_order_by_flush() -> None:
    stream = io.StringIO()
    writer = _LineWriter(stream, logging.Formatter("%(message)s"))
    for i in range(2000):
        writer.queue.put(_record(f"line {i}"))
    writer.flush()
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(2000)]


def test_a_record_that_does_not_format_costs_only_its_own_line() -> None:
    stream = io.StringIO()
    writer = _LineWriter(stream, logging.Formatter("%(message)s"))
    writer.queue.put(_record("before"))
    writer.queue.put(_record("%d apples", "not a number"))  # getMessage raises TypeError
    writer.queue.put(_record("after"))
    writer.flush()
    before, bad, after = stream.getvalue().splitlines()
    assert (before, after) == ("before", "after")
    assert "%d apples" in bad and "could not be formatted" in bad
    writer.queue.put(_record("still writing"))
    writer.flush()
    assert stream.getvalue().splitlines()[-1] == "still writing"


class _StuckStream(io.StringIO):
    """A stream whose write blocks until released: a stderr pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_flush_gives_up_on_a_stream_that_never_drains() -> None:
    stream = _StuckStream()
    writer = _LineWriter(stream, logging.Formatter("%(message)s"))
    writer.queue.put(_record("stuck"))
    started = time.monotonic()
    writer.flush(timeout=0.5)
    waited = time.monotonic() - started
    assert 0.4 < waited < 5  # it returned, after its timeout, with the line still unwritten
    assert stream.getvalue() == ""
    stream.release.set()
    writer.flush()
    assert stream.getvalue() == "stuck\n"


def test_line_times_match_the_stdlib_formatters() -> None:
    """The formatter renders each second once; every line's time must still be the stdlib's."""
    fmt = "%(asctime)s %(message)s"
    ours, stdlib = _Formatter(fmt), logging.Formatter(fmt)
    start = time.time()
    for offset in (0.0, 0.001, 0.5, 0.999, 1.0, 1.0004, 3600.25, 0.2):
        record = _record("x")
        record.created = start + offset
        record.msecs = (record.created - int(record.created)) * 1000
        assert ours.format(record) == stdlib.format(record)
