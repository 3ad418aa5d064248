"""The one error the local stack raises."""

from __future__ import annotations


class StackError(RuntimeError):
    """A component of the local stack could not be started; the message says which and why."""
