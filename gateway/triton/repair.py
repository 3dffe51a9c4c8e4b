"""Repairing a Triton model whose Python stub process died: the gateway has Triton reload it.

Triton keeps such a model READY and answers every request with "Stub process '<model>_0_0' is
not healthy" until the model is reloaded (server issues #7230, #7347); Docker restarts only
exited containers. So whoever sees the error (a request or the /readyz canary, through
`inference.Call.on_dead_stub`) calls `ModelRepair.request`, and the reload runs in the background
through Triton's repository API (Triton runs with --model-control-mode=explicit), with the admin
key that API is locked behind (PICMETRIC_TRITON_ADMIN_KEY, core/triton_admin.py): unload, then
load. A load alone does nothing to a loaded model whose files have not changed (Triton 2.51
compares their times), so it would leave the dead instance in place. The model reloaded is the one
named in the error: a step of the `yolov3` ensemble (unloading it unloads the ensemble, loading it
loads the ensemble again) or a network the `mtcnn` BLS model calls (which looks its steps up by
name on every call and needs no reload of its own). Meanwhile requests get 503, never a wait.
"""

from __future__ import annotations

import asyncio
import logging
import time

import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from core.triton_admin import grpc_admin_headers
from gateway import metrics

log = logging.getLogger(__name__)

# At most one reload of a model per this many seconds: a reload takes a few seconds, and
# requests already queued on the dead instance still fail after it. Also the wait between tries
# of a load that failed.
REPAIR_INTERVAL_S = 20.0
# A load that takes longer has hung (on the GPU host a TensorRT engine build may take minutes).
LOAD_TIMEOUT_S = 600.0
UNLOAD_TIMEOUT_S = 30.0
# How long a stopping gateway waits for reloads under way.
CLOSE_GRACE_S = 30.0
# Tries of the load after the unload; after the last one fails the model stays unloaded (503
# model_unavailable, the TritonNotReady alert) until someone loads it.
LOAD_ATTEMPTS = 3


class ModelRepair:
    """Background reloads of Triton models: at most one per model at a time, and at most one per
    model every `interval_s` seconds; counted in `picmetric_model_repairs_total`."""

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        interval_s: float = REPAIR_INTERVAL_S,
        load_timeout_s: float = LOAD_TIMEOUT_S,
        admin_key: str | None = None,
        replica: str = "",
    ) -> None:
        self.client = client
        self.where = f" at {replica}" if replica else ""  # in logs: which replica is reloaded
        self.headers = grpc_admin_headers(admin_key)
        self.interval_s = interval_s
        self.load_timeout_s = load_timeout_s
        self._started: dict[str, float] = {}  # Triton model -> when its last reload started
        self._running: dict[str, asyncio.Task[None]] = {}

    def request(self, model: str, reason: str) -> bool:
        """Start reloading Triton model `model` in the background, unless a reload of it is running
        or started less than `interval_s` seconds ago. True when a reload was started."""
        now = time.monotonic()
        started = self._started.get(model)
        if model in self._running or (started is not None and now - started < self.interval_s):
            return False
        self._started[model] = now
        log.warning(
            "Model %s is unhealthy (%s); reloading it through Triton%s", model, reason, self.where
        )
        task = asyncio.get_running_loop().create_task(self._reload(model))
        self._running[model] = task
        task.add_done_callback(lambda _: self._running.pop(model, None))
        return True

    def running(self) -> list[str]:
        """The Triton models being reloaded now."""
        return sorted(self._running)

    async def _reload(self, model: str) -> None:
        started = time.monotonic()
        try:
            await self.client.unload_model(
                model, headers=self.headers, client_timeout=UNLOAD_TIMEOUT_S
            )
        except InferenceServerException as exc:
            metrics.MODEL_REPAIRS.labels(model, "failed").inc()
            log.error(
                "Could not unload model %s from Triton to reload it: %s; %s",
                model,
                exc.message(),
                "set PICMETRIC_TRITON_ADMIN_KEY to the key Triton's admin API is locked with"
                if "restricted" in (exc.message() or "")
                else f"the next error from it tries again (at most every {self.interval_s:.0f} s)",
            )
            return
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                await self.client.load_model(
                    model, headers=self.headers, client_timeout=self.load_timeout_s
                )
            except InferenceServerException as exc:
                last = attempt == LOAD_ATTEMPTS
                log.error(
                    "Loading model %s into Triton failed (try %d of %d): %s; %s",
                    model,
                    attempt,
                    LOAD_ATTEMPTS,
                    exc.message(),
                    "it stays unloaded: read Triton's log, then load it through Triton's "
                    f"repository API (POST /v2/repository/models/{model}/load, with the admin "
                    "key's header)"
                    if last
                    else f"trying again in {self.interval_s:.0f} s",
                )
                if last:
                    metrics.MODEL_REPAIRS.labels(model, "failed").inc()
                    return
                await asyncio.sleep(self.interval_s)
                continue
            metrics.MODEL_REPAIRS.labels(model, "reloaded").inc()
            log.info(
                "Model %s was reloaded through Triton%s in %.1f s",
                model,
                self.where,
                time.monotonic() - started,
            )
            return

    async def wait(self) -> None:
        """Until the reloads running now have finished."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Give running reloads `grace_s` seconds to finish, then stop waiting for them: a reload
        cut between its unload and its load leaves the model unloaded (503 until it is loaded)."""
        running = list(self._running.values())
        if not running:
            return
        await asyncio.wait(running, timeout=grace_s)
        for model, task in list(self._running.items()):
            log.warning(
                "Stopping while model %s is being reloaded; if Triton had not started loading it "
                "yet, it stays unloaded until loaded through Triton's repository API",
                model,
            )
            task.cancel()
        await self.wait()
