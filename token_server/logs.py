"""Where the endpoint's log lines go: stderr, written by a thread of their own.

A request only queues its line, so a slow, full or contended stderr (a stuck log collector, a pipe
nobody drains) never holds up an answer; tests/token_server/test_request_log.py proves it. The
writer wakes at most every GATHER_SECONDS and writes every line waiting with one write: waking it
(and handing it the GIL) for each line had cost a token request more CPU than minting the token.
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
from collections.abc import Iterator
from typing import TextIO

GATHER_SECONDS = 0.05  # lines reach stderr at most this late
FLUSH_TIMEOUT_SECONDS = 10.0
YIELD_EVERY = 32  # formatted lines between offers of the GIL to the request thread
MAX_BATCH = 10_000  # lines per write, at most (a full batch is followed by the next at once)
_writer: _LineWriter | None = None


class _LineQueue(logging.handlers.QueueHandler):
    """Queues each record as it is, its message merged: the stdlib's copy and formatting of every
    record (for handlers that share it) would be the costliest part of a request's line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


class _Formatter(logging.Formatter):
    """The stdlib's line, its time rendered once per second instead of once per line (the
    writer's largest cost at thousands of lines a second)."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:  # the writer is this formatter's only thread
            self._second = second
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"  # the stdlib's "%s,%03d"


class _LineWriter:
    """The thread writing queued records to a stream, in batches."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        self.queue: queue.SimpleQueue[logging.LogRecord | threading.Event] = queue.SimpleQueue()
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

    def _lines(self, batch: list[logging.LogRecord | threading.Event]) -> Iterator[str]:
        records = [item for item in batch if isinstance(item, logging.LogRecord)]
        for n, record in enumerate(records, start=1):
            yield self._line(record)
            if n % YIELD_EVERY == 0:
                time.sleep(0)  # lets a request waiting for the GIL run: a batch never stalls one

    def _line(self, record: logging.LogRecord) -> str:
        try:
            return self._formatter.format(record) + "\n"
        except Exception:  # one bad record must not end the writer
            return f"{record.levelname} {record.name} {record.msg!r} (could not be formatted)\n"


def configure_logging(level: str) -> None:
    """Plain lines on stderr, through the queue. A no-op when logging is already set up (by the
    embedding app, or by `__main__` in the same process)."""
    global _writer
    root = logging.getLogger()
    if root.handlers:
        return
    formatter = _Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    # The lines name no thread or process, so records need not look them up: logging's own
    # switches for that (a tenth of a request line's cost when left on).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    _writer = _LineWriter(sys.stderr, formatter)
    atexit.register(flush_logs)  # every line still queued is written before a normal exit
    root.addHandler(_LineQueue(_writer.queue))
    root.setLevel(level.upper())


def flush_logs() -> None:
    """Write every line queued so far."""
    if _writer is not None:
        _writer.flush()
