"""The API keeps its own contract: schemathesis generates requests from /api/schema/
(examples, coverage and fuzzing phases per operation, then stateful sequences that use
one answer's ids in the next request) and sends them with a billing token to the real
Django application, in-process, on the test database.

Every answer must be no server error, have a documented status code and content type,
and match the documented response schema; schema-violating requests must be refused
and schema-valid ones accepted. The seed is fixed and the examples bounded, so a run is
the same every time (about a minute).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import ignored_auth

from config.wsgi import application
from hosting.choices import TokenScope
from hosting.services.tokens import issue_token
from hosting.validators import NAME_FORMAT, validate_name

from .factories import UserFactory

# Schema-valid inputs that still cannot be accepted, each for a reason the schema cannot
# say: an id in a body or a filter must name a row that exists (the generated ids do
# not), and an owner's password must pass the password validators (not too common).
# These operations answer 400 for them; every other check still runs on them.
NAMES_EXISTING_ROWS = [
    "POST /api/v1/customers/",
    "POST /api/v1/servers/",
    "POST /api/v1/ssh-keys/",
    "GET /api/v1/servers/",
    "GET /api/v1/jobs/",
    "GET /api/v1/ssh-keys/",
]

# A migration and its cancel change state that outlives one example (room held on a
# host, a job cancelled for good): chained, hypothesis's replays of the state machine see
# other answers and give up as "flaky". They are left out of the chained calls; each is
# still checked on its own by test_api_keeps_its_schema.
STATE_CHANGING_ACROSS_EXAMPLES = [
    "POST /api/v1/servers/{uuid}/migrate/",
    "POST /api/v1/jobs/{id}/cancel/",
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261124,
        "generation": {
            "max-examples": 10,
            "deterministic": True,
            "no-shrink": True,
            # a NUL is refused in every text field (PostgreSQL cannot store it)
            "allow-x00": False,
            # no example database: every run generates the same cases from the seed
            "database": "none",
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
        },
        "checks": {
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
            "positive_data_acceptance": {"enabled": True},
        },
        "operations": [
            {
                "include-name": NAMES_EXISTING_ROWS,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409"]
                    }
                },
            },
        ],
    }
)


def printable(text: str) -> bool:
    try:
        validate_name(text)
    except Exception:
        return False
    return True


# the names the schema's `printable-name` format means (no unassigned code points: a
# JSON Schema pattern cannot say that, the format does)
schemathesis.openapi.format(
    NAME_FORMAT,
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn"))).filter(printable),
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)


@pytest.fixture
def keep_test_connection():
    """The WSGI handler closes the connection after each request; the test's transaction
    must survive it (Django's test client does the same)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def billing_headers(db, keep_test_connection):
    user = UserFactory(username="billing", is_staff=True, is_superuser=True)
    _, key = issue_token(user=user, scope=TokenScope.BILLING)
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.django_db
@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_api_keeps_its_schema(case, billing_headers):
    # given a billing token; when schemathesis sends the case; then every check passes
    response = case.call_and_validate(headers=billing_headers)
    # (and the token was sent: a billing token is never turned away as unauthenticated)
    assert response.status_code != 401, response.text


@pytest.mark.django_db
def test_api_keeps_its_schema_across_calls(billing_headers):
    # given a billing token; when schemathesis chains calls (a created customer's id in
    # the next request, ...); then every answer passes every check
    chained = schema.exclude(name=STATE_CHANGING_ACROSS_EXAMPLES)

    class Workflow(chained.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case):
            return {"headers": billing_headers}

        def after_call(self, response, case):
            super().after_call(response, case)
            assert response.status_code != 401, response.text
            STATEFUL_CALLS.append((case.operation.label, response.status_code))

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            # the token goes in as a header here, which `ignored_auth` cannot take out
            # (tests/test_api_contract.py asserts 401 without credentials)
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=[ignored_auth],
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    STATEFUL_CALLS: list[tuple[str, int]] = []
    Workflow.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # then the calls were made and answered (each one's checks ran in validate_response)
    assert any(200 <= code < 300 for _, code in STATEFUL_CALLS)


def test_schema_documents_the_error_answers(billing_client):
    # given the schema as clients read it
    schema = billing_client.get("/api/schema/", {"format": "json"}).json()
    error = {"$ref": "#/components/schemas/Error"}
    # then every operation documents the error answers with the one error shape
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code in ("400", "401", "403", "404", "503"):
                content = operation["responses"][code]["content"]["application/json"]
                assert content["schema"] == error, (method, path, code)
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    # and a host's job has no server: the schema says so
    job = schema["components"]["schemas"]["Job"]
    assert job["properties"]["server"]["nullable"] is True
    # and the provider's fields are optional (customers do not get them)
    assert not {"log", "host", "requested_by"} & set(job["required"])
    # and request bodies are closed
    assert schema["components"]["schemas"]["ServerCreateRequest"]["additionalProperties"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/null%2Cnull/",
        "/api/v1/jobs/1.5/",
        "/api/v1/customers/99999999999999999999999/",
        "/api/v1/plans/0/",
        "/api/v1/servers/null%2Cnull/",
    ],
)
def test_ids_that_cannot_exist_are_a_json_404(billing_client, path):
    resp = billing_client.get(path)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
