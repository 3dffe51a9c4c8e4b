"""A job's webhook: its final state POSTed as JSON to the URL given at submit, signed, retried.

MINIMAL VERSION by h-jobs so the core runs; h-jobsedge writes the full module (the lead keeps
theirs on merge). The signature: header `Picmetric-Signature: t=<unix time>,v1=<hex>`, the hex
being HMAC-SHA256 with the job's secret over f"{t}.{body}" (Stripe's scheme: the time inside
the signature stops replays). Sent only where gateway.intake.urlguard allows, checked before
each try; at most jobs_webhook_attempts tries, backing off exponentially."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from gateway.errors import PicmetricError
from gateway.intake import urlguard
from gateway.settings import Settings
from gateway.tenancy import public_url

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Picmetric-Signature"
MAX_BACKOFF_S = 60.0


def signature(secret: str, body: bytes, at: int) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


async def send_job_webhook(
    url: str, secret: str, payload: dict[str, Any], client: httpx.AsyncClient, settings: Settings
) -> None:
    """POST `payload` to `url`, signed with `secret`; a 2xx ends it. Never raises: a webhook that
    cannot be delivered is logged, the job is done either way."""
    body = json.dumps(payload, sort_keys=True).encode()
    for attempt in range(settings.jobs_webhook_attempts):
        if attempt:
            await asyncio.sleep(min(2.0 ** (attempt - 1), MAX_BACKOFF_S))
        try:
            await urlguard.check_http_url(url, settings.allow_private_urls)
            at = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(secret, body, at),
            }
            response = await client.post(
                url, content=body, headers=headers, timeout=settings.jobs_webhook_timeout_s
            )
        except PicmetricError as exc:  # refused by the URL guard, or the host is gone
            log.warning("Job webhook to %s not sent: %s", public_url(url), exc)
            return
        except httpx.HTTPError as exc:
            log.info("Job webhook to %s, try %d: %r", public_url(url), attempt + 1, exc)
            continue
        if response.is_success:
            return
        log.info(
            "Job webhook to %s, try %d: HTTP %d", public_url(url), attempt + 1, response.status_code
        )
    log.warning(
        "Job webhook to %s not delivered after %d tries",
        public_url(url),
        settings.jobs_webhook_attempts,
    )
