"""Which models the Triton replicas serve right now, their versions and weight provenance, and the
readiness behind /readyz: one check at a time; an answered inference, or else a canary with a
short deadline of its own, is the proof that Triton serves, kept a while."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from gateway import metrics
from gateway.errors import ModelUnavailable, PicmetricError
from gateway.images.decode import DecodedImage
from gateway.triton.inference import MODELS, Call, ModelSpec, Options, run_models
from gateway.triton.replicas import Replica, Replicas

log = logging.getLogger(__name__)

CANARY_IMAGE = DecodedImage(np.full((64, 64, 3), 127, np.uint8), width=64, height=64)
UNKNOWN_PROVENANCE = {"kind": "unknown"}
# A check of a replica that takes longer finds it not live: a replica that does not answer must
# not hold up /readyz or an analysis.
CHECK_TIMEOUT_S = 5.0
# The canary's own deadline, far below the probe's timeout and the analyses' Triton timeout: it
# runs only when no analysis proved Triton recently (so its queue is short), and one stuck behind a
# full queue fails in this time rather than holding the verdict for the probe's whole timeout.
CANARY_TIMEOUT_S = 5.0


def _metric_total(metric: Any, suffix: str = "") -> float:
    """The sum of a prometheus_client metric's samples (those whose name ends with `suffix`)."""
    return sum(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith(suffix)
    )


def answered_inferences() -> float:
    """Inferences Triton answered for this process's analyses so far: the count of
    picmetric_inference_duration_seconds, which is observed for every model result that came
    back (failures are not observed)."""
    return _metric_total(metrics.INFERENCE_SECONDS, "_count")


def analyses_in_flight() -> float:
    """Analyses admitted and running in this process (picmetric_analyses_in_flight)."""
    return _metric_total(metrics.ANALYSES_IN_FLIGHT)


@dataclass
class ModelState:
    name: str
    triton_model: str
    ready: bool = False
    version: str | None = None
    weights: dict[str, Any] = field(default_factory=lambda: dict(UNKNOWN_PROVENANCE))
    cache_key: str | None = None
    input_size: int | None = None  # of a square `image` input


@dataclass
class ReplicaState:
    """What one Triton replica said at the last refresh."""

    replica: Replica
    live: bool
    models: dict[str, ModelState]

    def serves_all(self) -> bool:
        return self.live and all(state.ready for state in self.models.values())

    def report(self) -> dict[str, Any]:
        """As /readyz reports it."""
        return {
            "address": self.replica.address,
            "in_rotation": self.replica.in_rotation,
            "live": self.live,
            "models": {name: state.ready for name, state in self.models.items()},
        }


def square_input_size(metadata: dict[str, Any]) -> int | None:
    """S of an `image` input shaped [batch, S, S, 3] in Triton's model metadata, else None."""
    for tensor in metadata.get("inputs", []):
        shape = [int(d) for d in tensor.get("shape", [])]
        if tensor.get("name") == "image" and len(shape) == 4 and shape[1] == shape[2] > 0:
            return shape[1]
    return None


def read_provenance(repository: Path, model: str, version: str | None) -> dict[str, Any] | None:
    path = repository / model / (version or "1") / "provenance.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Readiness:
    """What one readiness check found: `ready` is all a client is told, with the models on
    random weights (`random_weights`: their answers are noise); `report` is for the operations
    port."""

    ready: bool
    report: dict[str, Any]
    random_weights: list[str]


class ModelCatalog:
    """The state of every model the gateway offers, refreshed from Triton."""

    def __init__(
        self, repository: Path, canary_max_age_s: float = 60.0, canary_retry_s: float = 5.0
    ) -> None:
        self.repository = repository
        self.states = {name: ModelState(name, spec.triton_model) for name, spec in MODELS.items()}
        self.live = False
        self.replicas: list[ReplicaState] = []
        self.canary_max_age_s = canary_max_age_s
        self.canary_retry_s = canary_retry_s
        self._last_canary: float | None = None  # when a canary last worked
        self.last_canary_failure: float | None = None  # when one last failed on every replica
        self.canary_timeout_s = CANARY_TIMEOUT_S
        # Analyses' answered inferences: the count at the last check, and when that was.
        self._answered = (answered_inferences(), time.monotonic())
        self.last_answer: float | None = None  # when an analysis' inference last proved Triton
        self._check: asyncio.Task[Readiness] | None = None
        self._verdict: Readiness | None = None  # the last check's, for probes while one runs

    @property
    def last_canary(self) -> float | None:
        return self._last_canary

    @last_canary.setter
    def last_canary(self, moment: float | None) -> None:
        """None forgets every proof (a call found a model's stub dead: gateway/services.py), the
        analyses' answers so far included: the next check runs a canary."""
        self._last_canary = moment
        if moment is None:
            self.last_answer = None
            self._answered = (answered_inferences(), time.monotonic())

    async def refresh(self, replicas: Replicas) -> None:
        """Ask every replica; a model is ready when a replica in rotation serves it (any replica,
        when none is in rotation)."""
        self.replicas = list(await asyncio.gather(*(self._replica(r) for r in replicas.all)))
        pool = [r for r in self.replicas if r.replica.in_rotation] or self.replicas
        self.live = any(r.live for r in self.replicas)
        for name, spec in MODELS.items():
            serving = [r.models[name] for r in pool if r.models[name].ready]
            self.states[name] = serving[0] if serving else ModelState(name, spec.triton_model)
            metrics.MODEL_READY.labels(name).set(int(self.states[name].ready))
        metrics.TRITON_LIVE.set(int(self.live))

    async def _replica(self, replica: Replica) -> ReplicaState:
        client = replica.client
        try:
            live = bool(await client.is_server_live(client_timeout=CHECK_TIMEOUT_S))
        except InferenceServerException:
            live = False
        models = {
            name: await self._state(client, spec) if live else ModelState(name, spec.triton_model)
            for name, spec in MODELS.items()
        }
        return ReplicaState(replica, live, models)

    async def _state(self, client: grpcclient.InferenceServerClient, spec: ModelSpec) -> ModelState:
        state = ModelState(spec.name, spec.triton_model)
        try:
            state.ready = bool(
                await client.is_model_ready(spec.triton_model, client_timeout=CHECK_TIMEOUT_S)
            )
            if state.ready:
                metadata = await client.get_model_metadata(
                    spec.triton_model, as_json=True, client_timeout=CHECK_TIMEOUT_S
                )
                state.version = max(metadata.get("versions", ["1"]), key=int)
                state.input_size = square_input_size(metadata)
        except InferenceServerException:
            state.ready = False
        record = read_provenance(self.repository, spec.provenance_model, state.version)
        if record:
            state.weights = record.get("weights", UNKNOWN_PROVENANCE)
            state.cache_key = record.get("cache_key")
        return state

    def ready_models(self) -> list[str]:
        return [name for name, state in self.states.items() if state.ready]

    async def specs_for(self, replicas: Replicas, names: list[str] | None) -> list[ModelSpec]:
        """The requested models (None: every ready one), refreshing from Triton when one is not
        known to be ready yet."""
        wanted = names or self.ready_models()
        if not wanted or any(not self.states[name].ready for name in wanted):
            await self.refresh(replicas)
            wanted = names or self.ready_models()
        if not wanted:
            raise ModelUnavailable("No model is ready on Triton; try again shortly.")
        return self.require(wanted)

    def require(self, names: list[str]) -> list[ModelSpec]:
        """Specs of the requested models, or ModelUnavailable naming the ones not ready."""
        missing = [name for name in names if not self.states[name].ready]
        if missing:
            raise ModelUnavailable(
                f"Model(s) {', '.join(missing)} not ready on Triton; try again shortly."
            )
        return [MODELS[name] for name in names]

    async def readiness(self, replicas: Replicas, call_for: Callable[[Replica], Call]) -> Readiness:
        """Ready while at least one replica serves every model and Triton answered recently: an
        analysis' inference, or else a canary.

        Unauthenticated probes must cost nothing and never ride on Triton's queue: callers that
        arrive while a check runs get the last check's verdict at once (the first ever awaits it;
        single flight); an answered inference or a canary that worked is trusted for
        `canary_max_age_s`, a failed canary for `canary_retry_s`; the canary runs only when no
        analysis proved Triton within `canary_max_age_s` and has CANARY_TIMEOUT_S to answer, so a
        verdict turns unready when a canary failed, not while it waits. While analyses are in
        flight no canary is sent at all (it would wait behind them in Triton's queue): their
        answers are the proof to come, and the last proof holds for `canary_max_age_s` plus the
        analyses' Triton deadline (by then one of them has answered, or Triton does not answer).
        A caller that gives up (cancelled) leaves the check running for the others."""
        check = self._check
        if check is None:
            check = self._check = asyncio.create_task(self._readiness(replicas, call_for))

            def forget(done: asyncio.Task[Readiness]) -> None:
                if self._check is done:
                    self._check = None
                if not done.cancelled() and done.exception() is None:
                    self._verdict = done.result()

            check.add_done_callback(forget)
        elif self._verdict is not None:
            return self._verdict
        return await asyncio.shield(check)

    def _note_answers(self) -> None:
        """An inference answered since the last check proves Triton served then (the earliest
        moment it can have been: the last check's)."""
        count, now = answered_inferences(), time.monotonic()
        seen, since = self._answered
        if count > seen:
            self.last_answer = since
        self._answered = (count, now)

    async def _readiness(
        self, replicas: Replicas, call_for: Callable[[Replica], Call]
    ) -> Readiness:
        self._note_answers()
        await self.refresh(replicas)
        serving = [state for state in self.replicas if state.serves_all()]
        answered = self._recent(self.last_answer, self.canary_max_age_s)
        canary_ok = answered or self._recent(self.last_canary, self.canary_max_age_s)
        proof = "answer" if answered else "canary" if canary_ok else None
        if serving and not canary_ok and analyses_in_flight() > 0:
            deadline = call_for(serving[0].replica).timeout
            last = max(self.last_answer or -math.inf, self.last_canary or -math.inf)
            if self._recent(last, self.canary_max_age_s + deadline):
                canary_ok, proof = True, "in_flight"
        if (
            serving
            and not canary_ok
            and not self._recent(self.last_canary_failure, self.canary_retry_s)
        ):
            # On every serving replica: a dead stub on one is found (and repaired) there.
            calls = [call_for(state.replica) for state in serving]
            canary_ok = any(await asyncio.gather(*(self.canary(call) for call in calls)))
            if not canary_ok:
                self.last_canary_failure = time.monotonic()
            else:
                proof = "canary"
        ready = bool(serving) and canary_ok
        weights = {name: state.weights.get("kind") for name, state in self.states.items()}
        report = {
            "ready": ready,
            "triton_live": self.live,
            "models": {name: state.ready for name, state in self.states.items()},
            "weights": weights,
            "canary_ok": canary_ok,
            # What proved Triton: an analysis' answer, a canary, or analyses still in flight
            # (within their deadline of the last proof); None: nothing.
            "proof": proof,
            "replicas": [state.report() for state in self.replicas],
        }
        random = [name for name, kind in weights.items() if kind == "random"]
        return Readiness(ready, report, random)

    @staticmethod
    def _recent(moment: float | None, max_age_s: float) -> bool:
        return moment is not None and time.monotonic() - moment < max_age_s

    async def canary(self, call: Call) -> bool:
        """One inference through every ready model on a small grey image, not retried: readiness
        says how Triton answers now, and a probe must answer promptly."""
        specs = [MODELS[name] for name in self.ready_models()]
        if not specs:
            return False
        call = replace(call, retry_wait=0.0, timeout=min(call.timeout, self.canary_timeout_s))
        try:
            await run_models(specs, call, CANARY_IMAGE, Options(threshold=0.5, max_results=1))
        except (PicmetricError, InferenceServerException) as exc:
            log.warning("Canary inference failed: %s", exc)
            return False
        self.last_canary = time.monotonic()
        return True
