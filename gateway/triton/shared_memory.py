"""A full-resolution input (`mtcnn`'s photo) handed to a Triton on the same host through Triton's
system shared memory instead of inside the gRPC request: the gateway copies the pixels into a
region Triton has mapped and the request only names it. A 12 MP photo then reaches Triton's
Python backend in ~70 ms instead of ~260 ms, wall and CPU time (BENCHMARKS.md, "Triton's system
shared memory for mtcnn's photo").

PICMETRIC_TRITON_SHARED_MEMORY: `auto` (the default) uses it with replicas at a loopback address
(`picmetric serve`, `./bootstrap.sh serve`); `on` with every replica whose Triton can open the
regions (one that sees this /dev/shm and runs as this user); `off` never. A replica where
registering fails (a remote Triton cannot open the regions) goes on over plain gRPC, said once in
the log, and is not asked again.

Bounded: `slots` regions per gateway process (the admission limit: each analysis in flight has at
most one full-resolution input in flight), each as large as the largest photo allowed but sparse:
a call reserves its bytes in /dev/shm (posix_fallocate: a full /dev/shm is an error, never a
SIGBUS), copies the pixels in, and gives the pages back (MADV_REMOVE) when Triton has answered, so
between calls the pool holds no memory and during one it holds one copy of the photo. Regions are
files /dev/shm/picmetric-<host>-<pid>-<token>-<slot>: on start, this host's files of processes
that no longer run (a gateway killed) are unlinked, and a Triton's registrations of them are
dropped when the gateway registers with it; on shutdown, the pool is unregistered and unlinked.
A Triton that restarted has forgotten the regions: the call that finds out registers them again
and is sent once more. A call abandoned (its deadline passed) frees its region at once: a request
Triton still has queued may then read other pixels, but nobody reads its answer."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import mmap
import os
import re
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tritonclient.grpc.aio as grpcclient
from starlette.concurrency import run_in_threadpool
from tritonclient.grpc.aio import InferenceServerClient as Client
from tritonclient.utils import InferenceServerException

from core.triton_admin import grpc_admin_headers

log = logging.getLogger(__name__)

Mode = Literal["auto", "on", "off"]

SHM_DIR = Path("/dev/shm")
PREFIX = "picmetric"
# Full-resolution inputs smaller than this (a photo under ~0.1 MP) go inside the request.
MIN_BYTES = 256 << 10
REGISTER_TIMEOUT_S = 5.0


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


_NAME = re.compile(rf"^{PREFIX}-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+-\d+$")


def loopback(address: str) -> bool:
    """Whether a replica's `host:port` (an IP, as gateway.targets resolves it) is this host's."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def wanted(mode: Mode, address: str) -> bool:
    """Whether the setting sends a replica's large inputs through shared memory at all."""
    return mode == "on" or (mode == "auto" and loopback(address))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(name: str) -> bool:
    """Whether a region name is one of this host's gateway processes that no longer runs."""
    match = _NAME.match(name)
    return bool(match and match["host"] == _host_tag() and not _alive(int(match["pid"])))


def remove_stale(directory: Path = SHM_DIR) -> list[str]:
    """Unlink the regions that gateways on this host left when killed; their names."""
    removed = []
    with contextlib.suppress(OSError):
        for path in directory.glob(f"{PREFIX}-*"):
            if stale(path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                removed.append(path.name)
    if removed:
        log.info("Removed %d shared-memory regions left by stopped gateways", len(removed))
    return removed


class Region:
    """One region: a sparse /dev/shm file of `size` bytes, mapped here."""

    def __init__(self, name: str, size: int, directory: Path = SHM_DIR) -> None:
        self.name, self.size = name, size
        self.key = f"/{name}"  # what Triton passes to shm_open
        self.path = directory / name
        self._fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            self.path.unlink()
            raise
        self.used = 0

    def fill(self, array: np.ndarray) -> None:
        """Copy `array` in; OSError (ENOSPC) when /dev/shm has no room for it."""
        os.posix_fallocate(self._fd, 0, array.nbytes)
        self.used = array.nbytes
        view = np.frombuffer(self._map, np.uint8, array.nbytes)
        np.copyto(view, array.reshape(-1).view(np.uint8))
        del view

    def release(self) -> None:
        """Give the pages of the last fill back to the system."""
        if self.used:
            page = mmap.PAGESIZE
            self._map.madvise(mmap.MADV_REMOVE, 0, -(-self.used // page) * page)
            self.used = 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class _Replica:
    registered: bool = False
    refused: bool = False  # registering failed for good: plain gRPC from now on


class SharedInputs:
    """The process's regions and, per replica, whether Triton has them registered."""

    def __init__(
        self, mode: Mode, slots: int, slot_bytes: int, admin_key: str | None = None
    ) -> None:
        self.mode, self.slot_bytes = mode, slot_bytes
        self._headers = grpc_admin_headers(admin_key)
        remove_stale()
        token = secrets.token_hex(4)
        base = f"{PREFIX}-{_host_tag()}-{os.getpid()}-{token}"
        self._regions: list[Region] = []
        try:
            for i in range(slots):
                self._regions.append(Region(f"{base}-{i}", slot_bytes))
        except OSError:
            for region in self._regions:
                region.close()
            raise
        self._free = list(self._regions)
        self._replicas: dict[str, _Replica] = {}
        self.shared_calls = 0  # calls whose input went through a region
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def regions(self) -> list[Region]:
        return list(self._regions)

    def in_use(self, address: str) -> bool:
        """Whether calls to this replica may go through shared memory (used for the memory the
        analysis reserves): wanted by the setting and not refused by that Triton."""
        replica = self._replicas.get(address)
        return wanted(self.mode, address) and not (replica and replica.refused)

    def forget(self, address: str) -> None:
        """The replica may have restarted: register again before the next call."""
        if address in self._replicas:
            self._replicas[address].registered = False

    async def _register(self, client: Client, address: str) -> bool:
        replica = self._replicas.setdefault(address, _Replica())
        if replica.registered or replica.refused:
            return replica.registered
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            if replica.registered or replica.refused:
                return replica.registered
            try:
                await self._drop_stale(client)
                for region in self._regions:
                    with contextlib.suppress(InferenceServerException):  # left from before
                        await client.unregister_system_shared_memory(
                            region.name, headers=self._headers, client_timeout=REGISTER_TIMEOUT_S
                        )
                    await client.register_system_shared_memory(
                        region.name,
                        region.key,
                        region.size,
                        headers=self._headers,
                        client_timeout=REGISTER_TIMEOUT_S,
                    )
            except InferenceServerException as exc:
                status = str(exc.status() or "")
                if "UNAVAILABLE" in status and "restricted" not in str(exc.message()):
                    return False  # not reachable now; the call says so, the next one tries again
                replica.refused = True
                log.warning(
                    "Triton %s cannot use this gateway's shared memory (%s); its photos go inside "
                    "the gRPC requests instead (PICMETRIC_TRITON_SHARED_MEMORY=%s). This is "
                    "expected when Triton runs on another host or in a container that does not "
                    "share this one's /dev/shm; with Triton's admin API locked, the gateway needs "
                    "PICMETRIC_TRITON_ADMIN_KEY.",
                    address,
                    str(exc.message() or exc).rstrip("."),
                    self.mode,
                )
                return False
            replica.registered = True
            log.info("Triton %s: large inputs go through shared memory", address)
            return True

    async def _drop_stale(self, client: Client) -> None:
        """Unregister the regions of stopped gateways on this host that Triton still maps."""
        status = await client.get_system_shared_memory_status(
            headers=self._headers, client_timeout=REGISTER_TIMEOUT_S
        )
        for name in status.regions:
            if stale(name):
                with contextlib.suppress(InferenceServerException):
                    await client.unregister_system_shared_memory(
                        name, headers=self._headers, client_timeout=REGISTER_TIMEOUT_S
                    )

    @contextlib.asynccontextmanager
    async def lease(
        self, client: Client, address: str, name: str, array: np.ndarray, datatype: str
    ) -> AsyncIterator[grpcclient.InferInput | None]:
        """The input `name`, naming a region that holds `array`, for one call to this replica;
        None when it goes inside the request (too small, not wanted, not registered, no free
        region or no room in /dev/shm). The region is free again when the block ends."""
        if (
            array.nbytes < MIN_BYTES
            or array.nbytes > self.slot_bytes
            or not self.in_use(address)
            or not self._free
            or not await self._register(client, address)
            or not self._free
        ):
            yield None
            return
        region = self._free.pop()
        try:
            filling = asyncio.ensure_future(
                run_in_threadpool(region.fill, np.ascontiguousarray(array))
            )
            try:
                await asyncio.shield(filling)
            except asyncio.CancelledError:
                # Its thread writes on: the region is free again only once it has stopped.
                await asyncio.wait([filling])
                raise
            except OSError as exc:
                log.warning("No room in /dev/shm for a photo (%s); sent inside the request", exc)
                region.release()
                yield None
                return
            tensor = grpcclient.InferInput(name, list(array.shape), datatype)
            tensor.set_shared_memory(region.name, array.nbytes)
            self.shared_calls += 1
            yield tensor
        finally:
            region.release()
            self._free.append(region)

    async def close(self, clients: dict[str, Client]) -> None:
        """Unregister the regions from every replica that has them (all replicas at once; one
        that does not answer is not asked again), then unlink them."""

        async def unregister(client: Client) -> None:
            for region in self._regions:
                try:
                    await client.unregister_system_shared_memory(
                        region.name, headers=self._headers, client_timeout=REGISTER_TIMEOUT_S
                    )
                except InferenceServerException:
                    return  # gone or restarted: it has no registration left to drop

        registered = [
            client
            for address, client in clients.items()
            if (replica := self._replicas.get(address)) and replica.registered
        ]
        await asyncio.gather(*(unregister(client) for client in registered))
        for region in self._regions:
            region.close()
        self._regions, self._free = [], []
