"""The log writer thread: every queued line is written, in order, and nothing it meets (a record
that does not format, a stream that never drains) ends it or keeps the process from exiting."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Iterator

import pytest

from token_server import logs
from token_server.logs import _Formatter, _LineQueue, _LineWriter, direct_line


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


@pytest.fixture
def kit_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The kit's own logging, as configure_logging sets it up, writing to a StringIO. Pytest
    adds its capture handlers to the root as the test starts, so the test body calls
    `own_root` to set them aside."""
    stream = io.StringIO()
    writer = _LineWriter(stream, _Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    monkeypatch.setattr(logs, "_writer", writer)
    monkeypatch.setattr(logs, "_handler", _LineQueue(writer.queue))
    monkeypatch.setattr(logging.root, "level", logging.INFO)
    yield stream


def own_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.root, "handlers", [logs._handler])


_STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def test_a_direct_line_is_the_line_logging_would_write(
    kit_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    own_root(monkeypatch)
    logger = logging.getLogger("token_server.test_direct")
    direct = direct_line(logger)
    assert direct is not None
    logger.warning('{"via":"logging"}')
    direct(logging.WARNING, '{"via":"direct"}')
    logs.flush_logs()
    via_logging, via_direct = kit_logging.getvalue().splitlines()
    assert re.fullmatch(
        _STAMP + r' WARNING token_server.test_direct \{"via":"logging"\}', via_logging
    )
    assert re.fullmatch(
        _STAMP + r' WARNING token_server.test_direct \{"via":"direct"\}', via_direct
    )


@pytest.mark.parametrize("change", ["handler", "filter", "no_propagate", "root_handler"])
def test_no_direct_line_when_anything_else_would_see_the_record(
    kit_logging: io.StringIO, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """An embedding app's handler or filter anywhere on the way, or a logger that does not
    reach the root, gets the records through logging as before."""
    parent = logging.getLogger("token_server.test_parent")
    logger = logging.getLogger("token_server.test_parent.child")
    own_root(monkeypatch)
    assert direct_line(logger) is not None
    if change == "handler":
        monkeypatch.setattr(parent, "handlers", [logging.NullHandler()])
    elif change == "filter":
        monkeypatch.setattr(parent, "filters", [logging.Filter("elsewhere")])
    elif change == "no_propagate":
        monkeypatch.setattr(parent, "propagate", False)
    else:
        monkeypatch.setattr(
            logging.root, "handlers", [*logging.root.handlers, logging.NullHandler()]
        )
    assert direct_line(logger) is None


def test_no_direct_line_when_the_kit_did_not_set_up_logging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "_writer", None)
    assert direct_line(logging.getLogger("token_server.requests")) is None
