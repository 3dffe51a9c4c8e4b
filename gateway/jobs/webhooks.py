"""A job's webhook: when a job ends (done: sent by the worker that answers its last photo;
cancelled: by the gateway that cancels it), its JSON (GET /v1/jobs/{id}'s) is POSTed to the URL
its submitter gave, signed, retried with exponential back-off, and only to an address the URL
guard allows.

The signature is Stripe's scheme: `Picmetric-Signature: t=<unix seconds>,v1=<hex>`, the hex being
HMAC-SHA256 with the job's webhook secret (shown once, when the job is submitted) over
`<t>.<body>`, the body's bytes as sent. A receiver recomputes it, compares in constant time and
refuses an old `t` (a replayed delivery). Each try is signed afresh, with its own `t`.

Each try resolves and checks the URL again (`urlguard.check_http_url`) and connects to the
addresses it checked (`intake.fetch.send_pinned`), so a name that later turns private, or
rebinds between the check and the connection, is never posted to. A redirect is not followed:
it counts as a failed try, like any answer but 2xx, a connection error or a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from gateway import metrics
from gateway.errors import ForbiddenURL, PicmetricError, UnsupportedScheme
from gateway.intake import urlguard
from gateway.intake.fetch import send_pinned
from gateway.jobs.progress import job_view
from gateway.settings import Settings
from gateway.store.storage import JobRow
from gateway.tenancy import public_url
from gateway.triton.catalog import ModelState

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Picmetric-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Picmetric-Signature` header's value for `body` sent at `timestamp`."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def send_job_ended(
    job: JobRow,
    client: httpx.AsyncClient,
    settings: Settings,
    states: Mapping[str, ModelState],
) -> bool:
    """The ended job's webhook, when its submitter asked for one (False otherwise), with the
    warnings GET /v1/jobs/{id} gives (`states`: the catalog's models, whose weights say them)."""
    if not (job.webhook_url and job.webhook_secret):
        return False
    payload = job_view(job, states=states).model_dump(mode="json")
    return await send_job_webhook(job.webhook_url, job.webhook_secret, payload, client, settings)


async def send_job_webhook(
    url: str, secret: str, payload: dict[str, Any], client: httpx.AsyncClient, settings: Settings
) -> bool:
    """POST `payload` as JSON to `url`, at most `jobs_webhook_attempts` times, until it answers
    2xx; waits `jobs_webhook_backoff_s`, then twice as long each time, between tries. True when
    delivered; False when it gave up: every try failed, or the URL is not allowed (a private
    address, a scheme but http(s), not a URL: refused at once, never retried). Never raises: a
    job's end does not depend on its receiver."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    shown = public_url(url)  # a webhook URL's query often carries a token: never logged
    wait = settings.jobs_webhook_backoff_s
    for attempt in range(1, settings.jobs_webhook_attempts + 1):
        try:
            async with asyncio.timeout(settings.jobs_webhook_timeout_s):
                status = await _post(url, secret, body, client, settings)
        except (ForbiddenURL, UnsupportedScheme, httpx.InvalidURL) as exc:
            log.warning("Job webhook to %s refused: %s", shown, exc)
            metrics.JOB_WEBHOOKS.labels("refused").inc()
            return False
        except TimeoutError:
            failure = f"no answer within {settings.jobs_webhook_timeout_s:g} s"
        except (PicmetricError, httpx.HTTPError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= status < 300:
                metrics.JOB_WEBHOOKS.labels("delivered").inc()
                return True
            failure = f"HTTP {status}"
        if attempt < settings.jobs_webhook_attempts:
            log.info(
                "Job webhook to %s failed (%s); try %d in %g s", shown, failure, attempt + 1, wait
            )
            await asyncio.sleep(wait)
            wait *= 2
    log.warning(
        "Job webhook to %s given up after %d tries (PICMETRIC_JOBS_WEBHOOK_ATTEMPTS), the last: %s",
        shown,
        settings.jobs_webhook_attempts,
        failure,
    )
    metrics.JOB_WEBHOOKS.labels("failed").inc()
    return False


async def _post(
    url: str, secret: str, body: bytes, client: httpx.AsyncClient, settings: Settings
) -> int:
    """One try: the URL checked, the body posted to a checked address; the answer's status (its
    body is never read)."""
    addresses = await urlguard.check_http_url(url, settings.allow_private_urls)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
    }
    async with send_pinned(client, "POST", url, addresses, body, headers) as response:
        return response.status_code
