"""A client generated from the schema works (issue 7 #16).

openapi-python-client generates a Python client from the live server's /api/schema/
(no network: it reads the file), and the billing flow runs through it against the live
server and a real Celery worker: create a customer with its owner, order a server, poll
the job, stop the server.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hosting.choices import TokenScope
from hosting.services.tokens import issue_token

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PACKAGE = "paddock_client"
RESOURCES = {
    *("customers", "plans", "images", "hosts", "servers", "jobs", "ssh_keys"),
    *("placement", "backups"),
}


@pytest.fixture
def schema_file(live_server, tmp_path) -> Path:
    resp = httpx.get(f"{live_server.url}/api/schema/", params={"format": "json"})
    assert resp.status_code == 200
    path = tmp_path / "schema.json"
    path.write_bytes(resp.content)
    return path


@pytest.fixture
def client_package(schema_file, tmp_path):
    """The generated client package, importable for the test and forgotten after it."""
    config = tmp_path / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter runs on the generated code
    generator = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(schema_file),
            "--output-path",
            str(tmp_path / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output, output
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path / PACKAGE
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def api(operation: str):
    return importlib.import_module(f"{PACKAGE}.api.{operation}")


def wait_for(client, job_id: int, timeout: float = 30):
    jobs_retrieve = api("jobs.jobs_retrieve")
    deadline = time.monotonic() + timeout
    while (job := jobs_retrieve.sync(id=job_id, client=client)).status.value in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def test_schema_offers_json_bodies_and_one_tag_per_resource(schema_file):
    import json

    schema = json.loads(schema_file.read_text())
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    body_types = {
        media for op in operations for media in op.get("requestBody", {}).get("content", {})
    }
    assert body_types == {"application/json"}
    tags = {tag for op in operations for tag in op["tags"]}
    assert tags == {r.replace("_", "-") for r in RESOURCES}


def test_generated_client_drives_the_billing_flow(
    celery_worker, client_package, live_server, staff, plan, image, host, pool
):
    # given a client generated from the schema, one module per resource
    assert {p.name for p in (client_package / "api").iterdir() if p.is_dir()} >= RESOURCES
    from paddock_client import AuthenticatedClient
    from paddock_client.models import CustomerRequest, OwnerRequest, ServerCreateRequest

    _, key = issue_token(user=staff, scope=TokenScope.BILLING)
    client = AuthenticatedClient(base_url=live_server.url, token=key)

    # when the billing system creates a customer with a panel login (a nested object)
    customer = api("customers.customers_create").sync(
        client=client,
        body=CustomerRequest(
            name="Hooli",
            email="it@hooli.example",
            external_ref="INV-7",
            owner=OwnerRequest(username="gavin", password="middle-out-2026"),
        ),
    )
    assert customer.__class__.__name__ == "Customer", customer
    assert customer.name == "Hooli"

    # and orders a server for it, and polls the job
    job = api("servers.servers_create").sync(
        client=client,
        body=ServerCreateRequest(
            customer=customer.id, plan=plan.pk, image=image.pk, hostname="hooli-1"
        ),
    )
    assert job.__class__.__name__ == "Job", job
    job = wait_for(client, job.id)
    assert job.status.value == "succeeded" and job.progress == 100
    server = api("servers.servers_retrieve").sync(uuid=job.server, client=client)
    assert server.state.value == "running"
    assert server.customer == customer.id
    assert [(a.address, a.family) for a in server.addresses] == [("192.0.2.2", 4)]

    # then it can stop the server through the client too
    stop = api("servers.servers_stop_create").sync(uuid=server.uuid, client=client)
    assert stop.__class__.__name__ == "Job", stop
    assert wait_for(client, stop.id).status.value == "succeeded"
    server = api("servers.servers_retrieve").sync(uuid=server.uuid, client=client)
    assert server.state.value == "stopped"

    # and an error comes back as the documented error model
    missing = api("jobs.jobs_retrieve").sync_detailed(id=999_999, client=client)
    assert missing.status_code == 404
    assert missing.parsed.error.code == "not_found"
