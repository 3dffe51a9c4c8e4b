"""The OpenAPI schema at /openapi.json says what the API accepts and answers: schemathesis
generates requests from it (valid and invalid) against the real gateway with the real Triton
behind it, and checks every answer: no server error but a documented 503, statuses, content
types, headers and bodies as documented, valid data accepted, invalid data refused. Bounded:
a few examples per operation, so the whole run stays well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

from picmetric.triton_server import TritonServer
from tests.gateway.conftest import BUCKET
from tests.utils.services import gateway_env, gateway_process

pytestmark = pytest.mark.integration

# Statuses that count as the API working as documented when schemathesis sends valid data:
# a generated URL names nothing that answers (no internet, loopback refused), so the fetch
# errors (400, 403) and a generated upload that is not an image (415) are the right answers.
API_KEY = "openapi-test-key"
EXAMPLES = 10  # per operation and mode
VALID_DATA_STATUSES = ["2xx", "400", "401", "403", "404", "413", "415"]


@pytest.fixture(scope="module")
def openapi_gateway(
    triton: TritonServer,
    model_repository: Path,
    s3_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The gateway with an API key, S3 for /v1/images, and short fetch timeouts (every
    generated URL fails to fetch: no internet, and loopback is refused)."""
    folder = tmp_path_factory.mktemp("openapi")
    env = gateway_env(
        triton,
        model_repository,
        f"sqlite:///{folder / 'analyses.db'}",
        s3_bucket=BUCKET,
        s3_endpoint_url=s3_url,
        api_keys=API_KEY,
        fetch_connect_timeout_s="1",
        fetch_timeout_s="2",
    )
    with gateway_process(env, folder / "gateway.log") as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(openapi_gateway: str) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": 1,
            "checks": {
                "not_a_server_error": {"expected-statuses": ["1xx", "2xx", "3xx", "4xx", "503"]},
                "positive_data_acceptance": {"expected-statuses": VALID_DATA_STATUSES},
            },
            "generation": {"max-examples": 10, "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 30,
            "headers": {"X-API-Key": API_KEY},
        }
    )
    return schemathesis.openapi.from_url(f"{openapi_gateway}/openapi.json", config=config)


def _check_operation(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate()

    check()


def test_openapi_schema_matches_what_the_gateway_accepts_and_answers(
    api_schema: schemathesis.BaseSchema,
) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check_operation(operation, mode)
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to send wrong: no parameters
            except (Exception, FailureGroup) as exc:  # every operation's, then all reported
                failures.append(f"{operation.label} ({mode.value} data): {exc}")
    assert not failures, "\n\n".join(failures)
