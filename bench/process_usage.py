"""CPU time and memory of the stack's processes, read from /proc (Linux), for the benchmarks.

One process by pid, or every live process of a process group: `local_stack` starts each server
and worker in a process group of its own, led by the pid it reports, so a worker's job processes
are counted with it.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Fields of /proc/<pid>/stat after the command name, counted from 0 (`man 5 proc` numbers from 1
# with the pid and the name first, so field n there is n - 3 here).
_PPID, _PGRP, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 2, 11, 12, 13, 14


def _stat(pid: int) -> list[str] | None:
    """The stat fields after the command name, or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _live_stats() -> dict[int, list[str]]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            stats[int(entry)] = fields
    return stats


def group_pids(pgid: int) -> list[int]:
    """Every live process of a process group."""
    return [pid for pid, fields in _live_stats().items() if int(fields[_PGRP]) == pgid]


def descendants(pid: int) -> dict[int, int]:
    """Every live process below `pid` (children, their children, ...), each with its parent."""
    parents = {child: int(fields[_PPID]) for child, fields in _live_stats().items()}
    found: dict[int, int] = {}
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.update((child, parents[child]) for child in frontier)
    return found


def cpu_seconds(pids: list[int], *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of the live processes among `pids`; with `reaped_children`,
    also those of their children that exited and were waited for."""
    last = _CSTIME if reaped_children else _STIME
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[_UTIME : last + 1])
    return total / CLK_TCK


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every process of a process group, reaped children included."""
    return cpu_seconds(group_pids(pgid), reaped_children=True)


def _smaps_kb(pid: int) -> dict[str, int]:
    """Rss and Pss of one process in kB (0 once it is gone)."""
    kb = {"Rss": 0, "Pss": 0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in kb:
                kb[key] = int(rest.split()[0])
    except OSError:
        pass
    return kb


def memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS (shared pages split between sharers) of one process, in MB."""
    kb = _smaps_kb(pid)
    return {"rss": round(kb["Rss"] / 1024, 1), "pss": round(kb["Pss"] / 1024, 1)}


def group_pss_mb(pgid: int) -> float:
    """PSS of every process of a process group, in MB."""
    return sum(_smaps_kb(pid)["Pss"] for pid in group_pids(pgid)) / 1024
