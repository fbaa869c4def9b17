"""Which process holds a lease or a claim, and whether it still runs: one naming for both.

A holder is named by its host and ``<pid namespace>/<pid>/<start time>`` (clock ticks after boot, from
``/proc/<pid>/stat``), so a pid reused by a later process, or one in another container, is not taken for
the holder. Only on the same host and pid namespace can liveness be told; elsewhere only time tells.
"""

from __future__ import annotations

import os
import socket

__all__ = ["process_alive", "this_process"]


def this_process() -> tuple[str, str]:
    """(host, ``namespace/pid/start time``) of the calling process."""
    pid = os.getpid()
    return socket.gethostname(), f"{_pid_namespace()}/{pid}/{_start_time(pid) or '-'}"


def process_alive(host: str, process: str) -> bool | None:
    """Whether the process named ``process`` on ``host`` (as ``this_process`` named it) still runs: True or
    False on this machine, None elsewhere (another host or pid namespace) or when the name is not ours."""
    parts = process.split("/")
    if len(parts) != 3 or host != socket.gethostname() or parts[0] != _pid_namespace():
        return None
    try:
        pid = int(parts[1])
    except ValueError:
        return None
    if parts[2] != "-":
        return _start_time(pid) == parts[2]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, but a process
        return True
    return True


def _pid_namespace() -> str:
    try:
        return "".join(ch for ch in os.readlink("/proc/self/ns/pid") if ch.isdigit()) or "-"
    except OSError:
        return "-"


def _start_time(pid: int) -> str | None:
    """A live process's start time (clock ticks after boot) from ``/proc/<pid>/stat``; None when it is gone
    or a zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # state, then starttime is the 22nd field
