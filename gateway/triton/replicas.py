"""The Triton replicas behind the gateway's target, each analysis sent to the next one in turn.

The target takes gRPC's own syntax: `host:port`, `ipv4:A:PORT,B:PORT` (or `ipv6:[A]:PORT,...`)
and `dns:///name:port` (parsed in gateway/targets.py). The gateway resolves it itself, keeps one
gRPC client per address and hands each analysis the next replica in rotation (round robin per
analysis, not per connection).
Why not gRPC's `round_robin` policy on one channel: gRPC re-resolves DNS only on connection
events, so a Triton the autoscaler adds would wait for one; and a call on a shared channel does
not say which replica answered, while repair (a stub's reload through the repository API) and
readiness must talk to that one replica. With a client per address both come for free: a dead
stub is reloaded through the client that met it, /readyz asks every replica, and a call that
finds its Triton going away is retried on another. A `dns:` target (or a plain name) is resolved
again every RESOLVE_S seconds with the event loop's getaddrinfo (every PROBE_S while a replica is
out of rotation or none is known), which is what a Kubernetes headless Service needs: pods added
or removed are seen within that time.

A replica that does not answer (UNAVAILABLE: refused, gone, stopping) FAILURES_OUT times in a row
leaves the rotation; a background probe asks it every PROBE_S seconds (Triton's server-ready,
bounded) and puts it back when it answers. When no replica is in rotation, analyses go to all of
them (they answer 503 at once rather than nothing being tried).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tritonclient.grpc.aio import InferenceServerClient as Client
from tritonclient.utils import InferenceServerException

from gateway import metrics
from gateway.errors import ModelUnavailable
from gateway.targets import Resolver, parse_target, resolve
from gateway.triton.repair import ModelRepair

log = logging.getLogger(__name__)

FAILURES_OUT = 3  # unanswered calls in a row that take a replica out of rotation
PROBE_S = 2.0  # how often a replica out of rotation is asked whether it is ready again
PROBE_TIMEOUT_S = 2.0
RESOLVE_S = 30.0  # how often a DNS name is resolved again
# A replica whose address left the DNS answer keeps its client this long, for calls in flight
# (triton_timeout_s, 30 s by default, plus a retry's wait).
RETIRE_GRACE_S = 60.0


@dataclass(eq=False)
class Replica:
    """One Triton: its client, the model repair that talks to it, and whether it is in rotation."""

    address: str
    client: Client
    repair: ModelRepair
    in_rotation: bool = True
    failures: int = field(default=0, repr=False)  # unanswered calls in a row


class Replicas:
    """The replicas the target resolves to; `next()` is the one the next analysis goes to."""

    def __init__(
        self,
        target: str,
        connect: Callable[[str], Client],
        admin_key: str | None = None,
        resolver: Resolver | None = None,
        probe_s: float = PROBE_S,
        resolve_s: float = RESOLVE_S,
    ) -> None:
        self.target_text = target
        self.target = parse_target(target)
        self._connect = connect
        self._admin_key = admin_key
        self._resolver = resolver or resolve  # looked up now: a test may replace the module's
        self.probe_s, self.resolve_s = probe_s, resolve_s
        self._replicas: dict[str, Replica] = {}
        self._turn = 0
        self._watcher: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        for address in self.target.addresses:
            self._add(address)
        self._count()

    @property
    def all(self) -> list[Replica]:
        return list(self._replicas.values())

    async def start(self) -> None:
        """Resolve a DNS target once, then watch in the background: probe the replicas out of
        rotation, resolve the name again."""
        if self.target.name is not None:
            await self._resolve()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def next(self, exclude: Replica | None = None) -> Replica:
        """The next replica in rotation (any replica when none is), another than `exclude` when
        there is one; ModelUnavailable when the target resolves to none."""
        pool = [r for r in self._replicas.values() if r.in_rotation] or self.all
        pool = [r for r in pool if r is not exclude] or pool
        if not pool:
            raise ModelUnavailable(
                f"The Triton target {self.target_text} resolves to no address; try again shortly."
            )
        self._turn += 1
        return pool[self._turn % len(pool)]

    def reached(self, replica: Replica, answered: bool) -> None:
        """A call to `replica` got an answer (any, errors included) or none (UNAVAILABLE)."""
        if answered:
            replica.failures = 0
            if not replica.in_rotation:
                self._rejoin(replica)
            return
        replica.failures += 1
        if replica.in_rotation and replica.failures >= FAILURES_OUT:
            replica.in_rotation = False
            log.warning(
                "Triton %s did not answer %d calls in a row; out of rotation until it answers",
                replica.address,
                replica.failures,
            )
            self._count()

    def _rejoin(self, replica: Replica) -> None:
        replica.failures, replica.in_rotation = 0, True
        log.info("Triton %s answers again; back in rotation", replica.address)
        self._count()

    def _add(self, address: str) -> None:
        client = self._connect(address)
        repair = ModelRepair(client, admin_key=self._admin_key, replica=address)
        self._replicas[address] = Replica(address, client, repair)

    def _count(self) -> None:
        in_rotation = sum(r.in_rotation for r in self._replicas.values())
        metrics.TRITON_REPLICAS.labels("in_rotation").set(in_rotation)
        metrics.TRITON_REPLICAS.labels("out").set(len(self._replicas) - in_rotation)

    async def _watch(self) -> None:
        next_resolve = time.monotonic() + self.resolve_s
        while True:
            await asyncio.sleep(self.probe_s)
            try:
                out = [r for r in self._replicas.values() if not r.in_rotation]
                await asyncio.gather(*(self._probe(r) for r in out))
                # Sooner while a replica is missing or out: a restarted pod may have a new address.
                due = time.monotonic() >= next_resolve or out or not self._replicas
                if self.target.name is not None and due:
                    next_resolve = time.monotonic() + self.resolve_s
                    await self._resolve()
            except Exception:  # the watcher must outlive any one failure
                log.exception("Watching the Triton replicas failed; trying again")

    async def _probe(self, replica: Replica) -> None:
        try:
            ready = await replica.client.is_server_ready(client_timeout=PROBE_TIMEOUT_S)
        except InferenceServerException:
            return
        if ready and not replica.in_rotation:
            self._rejoin(replica)

    async def _resolve(self) -> None:
        assert self.target.name is not None
        try:
            addresses = await self._resolver(self.target.name, self.target.port)
        except OSError as exc:
            addresses, reason = [], str(exc)
        else:
            reason = "no address"
        if not addresses:
            log.warning(
                "Resolving the Triton target %s failed (%s); keeping %s",
                self.target_text,
                reason,
                ", ".join(self._replicas) or "no replica",
            )
            return
        for address in addresses:
            if address not in self._replicas:
                log.info("Triton %s joins (resolved from %s)", address, self.target_text)
                self._add(address)
        for address in set(self._replicas) - set(addresses):
            log.info("Triton %s left %s's addresses; retiring it", address, self.target_text)
            task = asyncio.get_running_loop().create_task(
                self._retire(self._replicas.pop(address), RETIRE_GRACE_S)
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self._count()

    async def _retire(self, replica: Replica, grace_s: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(grace_s)
        await replica.repair.close()
        await replica.client.close()

    async def close(self) -> None:
        """Stop watching; close every client (repairs under way get their grace first)."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in list(self._retiring):
            task.cancel()  # _retire then closes at once
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await asyncio.gather(*(replica.repair.close() for replica in self.all))
        for replica in self.all:
            await replica.client.close()
