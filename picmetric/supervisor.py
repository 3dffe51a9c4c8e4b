"""Keeping the local Triton running: a watcher thread restarts it when it exits, with backoff,
after killing what the dead server left behind."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from picmetric.triton_server import LEFTOVER_TIMEOUT_S, TritonError, TritonServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised Triton exits, restart it after 1, 2, 4 … at most 30 s; a server that
    stayed up `healthy_s` seconds starts the count again. After `max_restarts` restarts in a row
    without such a healthy period, give up: a Triton that fails to load the same models again
    and again would otherwise loop forever (None: never give up)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    healthy_s: float = 60.0
    max_restarts: int | None = 5

    def delay(self, in_a_row: int) -> float:
        """Seconds to wait before the `in_a_row`-th restart in a row (1, 2, …)."""
        return float(min(self.first_delay_s * 2 ** (in_a_row - 1), self.max_delay_s))


class TritonSupervisor:
    """Keeps a TritonServer running: `start()` starts it and a watcher thread that restarts it
    whenever it exits (its left-behind stubs killed first), with `RestartPolicy`'s backoff.
    `stop()` stops the watcher and then the server, and returns when all its processes are gone.
    `restarts` counts the restarts so far; when the watcher gives up, `gave_up` is set and
    `on_give_up` is called from the watcher thread."""

    def __init__(
        self,
        server: TritonServer,
        policy: RestartPolicy | None = None,
        ready_timeout: float = 300.0,
        on_give_up: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.policy = policy or RestartPolicy()
        self.ready_timeout = ready_timeout
        self.on_give_up = on_give_up
        self.restarts = 0
        self.gave_up = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # a launch and a stop never overlap
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        """Start the server, wait until it is ready, then watch it."""
        self.server.start(self.ready_timeout)
        self._watcher = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop watching, then stop the server (bounded: SIGTERM, then SIGKILL of its group)."""
        self._stopping.set()
        with self._lock:
            self.server.stop()
        if self._watcher is not None:
            self._watcher.join(timeout=LEFTOVER_TIMEOUT_S)

    def _wait_for_exit(self) -> int | None:
        """The server's exit code once it exits; None when asked to stop first."""
        process = self.server.process
        assert process is not None
        while not self._stopping.is_set():
            try:
                return process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
        return None

    def _watch(self) -> None:
        in_a_row = 0
        ready_since: float | None = time.monotonic()  # None: the last restart failed
        while (code := self._wait_for_exit()) is not None:
            with self._lock:
                if self._stopping.is_set():
                    return
                self.server.kill_leftovers()
            if ready_since is not None and time.monotonic() - ready_since >= self.policy.healthy_s:
                in_a_row = 0
            if self.policy.max_restarts is not None and in_a_row >= self.policy.max_restarts:
                log.error(
                    "Triton exited with code %d after %d restart(s) in a row that did not stay "
                    "up %.0f s; giving up.\n%s",
                    code,
                    in_a_row,
                    self.policy.healthy_s,
                    self.server.log_tail(),
                )
                self.gave_up.set()
                if self.on_give_up is not None:
                    self.on_give_up()
                return
            in_a_row += 1
            self.restarts += 1
            delay = self.policy.delay(in_a_row)
            log.warning(
                "Triton exited with code %d; restarting in %g s (restart %d)",
                code,
                delay,
                self.restarts,
            )
            if self._stopping.wait(delay):
                return
            ready_since = time.monotonic() if self._restart() else None
        # asked to stop: stop() stops the server

    def _restart(self) -> bool:
        """Launch the server again and wait until it is ready; False when that failed (the
        process has then exited, or been stopped, and the next round of the watch sees it)."""
        with self._lock:
            if self._stopping.is_set():
                return True
            try:
                self.server.launch()
            except TritonError as exc:
                log.error("Could not restart Triton: %s", exc)
                return False
        try:
            self.server.wait_ready(self.ready_timeout)
        except TritonError as exc:
            if not self._stopping.is_set():
                log.error("Triton restart %d failed: %s", self.restarts, exc)
            return False
        log.info("Triton is serving again after restart %d", self.restarts)
        return True
