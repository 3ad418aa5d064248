"""Where the endpoint's log lines go: stderr, written by a thread of their own.

A request only queues its line, so a slow, full or contended stderr (a stuck log collector, a pipe
nobody drains) never holds up an answer; tests/token_server/test_request_log.py proves it.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue

_listener: logging.handlers.QueueListener | None = None


class _LineQueue(logging.handlers.QueueHandler):
    """Queues each record as it is, its message merged: the stdlib's copy and formatting of every
    record (for handlers that share it) would be the costliest part of a request's line."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg, record.args = record.getMessage(), None
        return record


def configure_logging(level: str) -> None:
    """Plain lines on stderr, through the queue. A no-op when logging is already set up (by the
    embedding app, or by `__main__` in the same process)."""
    global _listener
    root = logging.getLogger()
    if root.handlers:
        return
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler()
    writer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    _listener = logging.handlers.QueueListener(lines, writer)
    _listener.start()
    atexit.register(flush_logs)  # every line still queued is written before a normal exit
    root.addHandler(_LineQueue(lines))
    root.setLevel(level.upper())


def flush_logs() -> None:
    """Write every line queued so far, then go on queueing (the writer thread is restarted)."""
    if _listener is not None:
        _listener.stop()  # puts the end marker and waits for the writer to reach it
        _listener.start()
