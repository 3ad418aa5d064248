"""Where the endpoint's log lines go: stderr, written by a thread of their own.

A request only queues its line, so a slow, full or contended stderr (a stuck log collector, a pipe
nobody drains) never holds up an answer; tests/token_server/test_request_log.py proves it. The
writer wakes at most every GATHER_SECONDS and writes every line waiting with one write: waking it
(and handing it the GIL) for each line had cost a token request more CPU than minting the token.
The request line, one per request, skips `logging` altogether when nothing but this writer would
see it (`direct_line`): building and routing its LogRecord was ~15% of a mint-only request.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import logging.handlers
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

GATHER_SECONDS = 0.05  # lines reach stderr at most this late
FLUSH_TIMEOUT_SECONDS = 10.0
YIELD_EVERY = 32  # formatted lines between offers of the GIL to the request thread
MAX_BATCH = 10_000  # lines per write, at most (a full batch is followed by the next at once)
_writer: _LineWriter | None = None
_handler: logging.Handler | None = None


class _LineQueue(logging.handlers.QueueHandler):
    """Queues each record as it is, its message merged: the stdlib's copy and formatting of every
    record (for handlers that share it) would be the costliest part of a request's line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


class _Stamp:
    """The stdlib formatter's default time ("2026-12-06 22:31:29,533", local time), each second
    rendered once. Shared by the writer's formatter and the request line, so the tuple holding
    the current second is replaced whole, never half updated."""

    def __init__(self) -> None:
        self._current = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        cached, stamp = self._current
        if second != cached:
            stamp = time.strftime(logging.Formatter.default_time_format, time.localtime(second))
            self._current = (second, stamp)
        return f"{stamp},{int((created - second) * 1000):03d}"  # the stdlib's "%s,%03d"


_stamp = _Stamp()


class _Formatter(logging.Formatter):
    """The stdlib's line, its time rendered once per second instead of once per line."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _stamp(record.created)


class _LineWriter:
    """The thread writing queued records to a stream, in batches."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        self.queue: queue.SimpleQueue[logging.LogRecord | str | threading.Event] = (
            queue.SimpleQueue()
        )
        self._stream = stream
        self._formatter = formatter
        threading.Thread(target=self._run, name="log-writer", daemon=True).start()

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> None:
        """Return once every line queued before this call is written (or after `timeout`: a
        stderr nobody drains must not keep the process from exiting)."""
        written = threading.Event()
        self.queue.put(written)
        written.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]  # asleep until there is a line
            time.sleep(GATHER_SECONDS)  # meanwhile lines queue without waking this thread
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_BATCH:
                    batch.append(self.queue.get_nowait())
            text = "".join(self._lines(batch))
            with contextlib.suppress(OSError, ValueError):  # stderr closed: nowhere to write
                self._stream.write(text)
                self._stream.flush()
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()

    def _lines(self, batch: list[logging.LogRecord | str | threading.Event]) -> Iterator[str]:
        n = 0
        for item in batch:
            if isinstance(item, str):  # a line written in full where it was made
                yield item
            elif isinstance(item, logging.LogRecord):
                yield self._line(item)
                n += 1
                if n % YIELD_EVERY == 0:
                    # lets a request waiting for the GIL run: a batch never stalls one
                    time.sleep(0)

    def _line(self, record: logging.LogRecord) -> str:
        try:
            return self._formatter.format(record) + "\n"
        except Exception:  # one bad record must not end the writer
            return f"{record.levelname} {record.name} {record.msg!r} (could not be formatted)\n"


def configure_logging(level: str) -> None:
    """Plain lines on stderr, through the queue. A no-op when logging is already set up (by the
    embedding app, or by `__main__` in the same process)."""
    global _writer, _handler
    root = logging.getLogger()
    if root.handlers:
        return
    formatter = _Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    # The lines name no thread or process, so records need not look them up: logging's own
    # switches for that (a tenth of a request line's cost when left on).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    _writer = _LineWriter(sys.stderr, formatter)
    atexit.register(flush_logs)  # every line still queued is written before a normal exit
    _handler = _LineQueue(_writer.queue)
    root.addHandler(_handler)
    root.setLevel(level.upper())


def direct_line(logger: logging.Logger) -> Callable[[int, str], None] | None:
    """When this process's logging is the kit's own (configured here, and `logger` has no
    handler of its own), a function queueing `logger`'s lines as finished text: the line the
    formatter would write, minus the LogRecord and the handler chain, which were most of a
    request line's cost. None otherwise: the caller then logs through `logging`, so an embedding
    app's handlers see every line."""
    writer = _writer
    if writer is None or _has_own_handlers(logger):
        return None
    name, put = logger.name, writer.queue.put

    def write(level: int, message: str) -> None:
        put(f"{_stamp(time.time())} {logging.getLevelName(level)} {name} {message}\n")

    return write


def _has_own_handlers(logger: logging.Logger) -> bool:
    """Whether anything but the kit's own handler on the root sees `logger`'s records: a handler
    or filter on the way up, or a logger that stops them before the root."""
    node = logger
    while node is not logging.root:
        if node.handlers or node.filters or not node.propagate or node.parent is None:
            return True
        node = node.parent
    return node.handlers != [_handler] or bool(node.filters)


def flush_logs() -> None:
    """Write every line queued so far."""
    if _writer is not None:
        _writer.flush()
