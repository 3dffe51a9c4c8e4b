"""What runs on this machine, read straight from /proc: the oracle for tests that stop servers."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    group: int
    state: str
    command: str


def processes() -> list[Process]:
    """Every live (not zombie) process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, parent, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if state not in ("Z", "X"):
            found.append(Process(int(entry.name), int(parent), int(group), state, command))
    return found


def stubs_of(server_pid: int) -> list[Process]:
    """Python-backend stubs started by the Triton server `server_pid`: its children, or still in
    its process group after it died (an orphan's parent becomes another process)."""
    return [
        p
        for p in processes()
        if STUB in p.command and server_pid in (p.parent, p.group) and p.pid != server_pid
    ]


def group_of(group: int) -> list[Process]:
    return [p for p in processes() if p.group == group]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on `port` (a connection is refused)."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) != 0
