"""Which gateway modules one request passes through, in order: a profiler that records each entry
into a gateway module, and the two readings of them (`benchmarks.request_path` prints them;
`tests/gateway/test_request_path.py` checks them). A module is entered when one of its functions
starts (a new frame, not a coroutine resuming) called from another gateway module (the nearest
one up the stack: contextlib, pydantic or the event loop between are not ours). Every gateway
module counts, the cross-cutting ones too (tracing, admission, results' types: a property or
validator of a type is a function of its module), and calls into one module one after the other
are one entry.

"In time order": the entries as they happened, so the strands that run at once (the quality
figures' task beside the models, each model's call in its own task) are interleaved. "As read"
(the counting rule of "one request reads top-down"): each strand (an asyncio task or a worker
thread: a function started with no gateway frame above it, its parent the strand whose context it
copied) is read whole where it starts, as one reads the code; and of sibling strands started by
the same function (one task per model: the same code, as a loop's body) the ones that enter
exactly the same modules in the same order are read once. A sibling that enters other modules is
read too, and counted. Both readings keep only the request's strands (its first entry's and
those started from it): a background task that happens to run meanwhile (the Triton replicas'
watcher) is not the request's path."""

from __future__ import annotations

import contextvars
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_STRAND: contextvars.ContextVar[int] = contextvars.ContextVar("strand", default=0)


class Entries:
    """Records each entry into a gateway module while `on`, with the strand it happened in."""

    def __init__(self) -> None:
        self.on = False
        self.modules: list[str] = []
        self.strands: list[int] = []  # of each entry in `modules`
        self.parents: dict[int, int] = {}  # strand: the strand it started from (0: none)
        self.roots: dict[int, str] = {}  # strand: the function that started it
        self._seen: set[int] = set()
        self._frames: list[FrameType] = []  # kept alive, so that no id is reused

    def clear(self) -> None:
        self.modules.clear()
        self.strands.clear()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.on:
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("gateway") or id(frame) in self._seen:
            return
        self._seen.add(id(frame))
        self._frames.append(frame)
        back, caller = frame.f_back, ""
        while back is not None and not caller:
            name = back.f_globals.get("__name__", "")
            caller = name if name.startswith("gateway") else ""
            back = back.f_back
        if not caller:  # a strand starts: a task's coroutine, a worker thread's function
            strand = len(self.roots) + 1
            self.parents[strand] = _STRAND.get()
            self.roots[strand] = f"{module}.{frame.f_code.co_qualname}"
            _STRAND.set(strand)  # in the task's (or the thread's copied) context
        if caller != module:
            self.modules.append(module)
            self.strands.append(_STRAND.get())

    def of_request(self) -> list[tuple[str, int]]:
        """The (module, strand) entries of the request's strands, in time order."""
        ours = set(self.strands[:1])
        for strand in dict.fromkeys(self.strands):
            if self.parents.get(strand) in ours:
                ours.add(strand)
        return [(m, s) for m, s in zip(self.modules, self.strands, strict=True) if s in ours]

    def as_read(self) -> list[str]:
        """The entries with each strand read whole where it starts, identical siblings once."""
        entries = self.of_request()
        strands = [strand for _, strand in entries]
        seen = set(strands)
        children: dict[int, list[int]] = {}
        for strand in dict.fromkeys(strands):
            parent = self.parents[strand] if self.parents.get(strand) in seen else 0
            children.setdefault(parent, []).append(strand)

        def read(strand: int) -> list[str]:
            path: list[str] = []
            starts = {strands.index(child): child for child in children.get(strand, [])}
            read_already: set[tuple[str, tuple[str, ...]]] = set()
            for index, (module, owner) in enumerate(entries):
                if owner == strand:
                    path.append(module)
                elif index in starts:
                    child = starts[index]
                    reading = read(child)
                    key = (self.roots[child], tuple(collapsed(reading)))
                    if key not in read_already:
                        read_already.add(key)
                        path += reading
            return path

        return read(0)


def collapsed(path: list[str]) -> list[str]:
    """`path` without repeats: calls into one module one after the other are one entry."""
    return [m for i, m in enumerate(path) if i == 0 or path[i - 1] != m]


def returns(path: list[str]) -> Counter[str]:
    """How often `path` (collapsed) comes back to each module it had left."""
    seen: set[str] = set()
    back: Counter[str] = Counter()
    for module in collapsed(path):
        if module in seen:
            back[module] += 1
        seen.add(module)
    return back


@contextmanager
def recording() -> Iterator[Entries]:
    """Entries recorded in this process while the block runs and `on` is set (every thread's)."""
    entries = Entries()
    sys.setprofile(entries)
    threading.setprofile(entries)  # the test client's event loop and the worker threads
    try:
        yield entries
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def record(entries: Entries, request: Callable[[], Any]) -> None:
    """`entries` of one `request()` only (the earlier ones' cleared)."""
    entries.clear()
    entries.on = True
    try:
        request()
    finally:
        entries.on = False
