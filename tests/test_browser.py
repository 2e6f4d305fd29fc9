"""The panel in a real browser: Chromium (Playwright) against daphne, Redis and a worker.

Daphne serves config.asgi (HTTP and WebSocket) from a thread of this process, so it uses
the test database, and the Celery worker of the `celery_worker` fixture runs in this
process too, so that it shares the libvirt test driver's state with the assertions here.

Screenshots of the server page (provisioning, then running) go to $PADDOCK_SCREENSHOTS
(default var/screenshots); `PADDOCK_SCREENSHOTS=docs/screenshots` refreshes the ones the
README shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

import libvirt
import pytest
from django.conf import settings

from hosting.choices import JobStatus, ServerState
from hosting.models import Server
from hosting.services import operations

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("PADDOCK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(os.environ.get("PADDOCK_SCREENSHOTS") or settings.VAR_DIR / "screenshots")
# Each step of a job waits this long, so that a person (and this test) sees it move.
STEP_DELAY = 0.4
TIMEOUT_MS = 30_000


class DaphneThread:
    """Daphne on a free loopback port, its Twisted reactor running in a daemon thread."""

    def __init__(self) -> None:
        from daphne.server import Server as Daphne  # installs the asyncio reactor first
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from config.asgi import application

        self.server = Daphne(
            application=ASGIStaticFilesHandler(application),
            endpoints=["tcp:port=0:interface=127.0.0.1"],
            signal_handlers=False,
            websocket_connect_timeout=10,
        )
        self.thread = threading.Thread(target=self.server.run, name="daphne", daemon=True)

    def start(self, timeout: float = 15) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.listening_addresses:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("daphne did not start listening")
            time.sleep(0.05)
        host, port = self.server.listening_addresses[0]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(self.server.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_asgi_url(django_db_setup):
    # (after the test database exists, and stopped before it is dropped)
    if not (Path(settings.BASE_DIR) / "static" / "vendor" / "bootstrap").is_dir():
        pytest.fail("static/vendor/ is missing: run `npm ci` (it copies the front-end assets).")
    daphne = DaphneThread()
    url = daphne.start()
    yield url
    daphne.stop()


@pytest.fixture(scope="module")
def chromium():
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop marked running in this thread, which
    # Django takes for an async context; the ORM calls here are plain sync code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def slow_jobs(monkeypatch):
    """Make each recorded job step take a moment, as it does on a real hypervisor."""
    real = operations.update_progress

    def slow(job, progress, message):
        time.sleep(STEP_DELAY)
        real(job, progress, message)

    monkeypatch.setattr(operations, "update_progress", slow)


# Records what the page shows over time, installed before any page script runs.
WATCH_PROGRESS = """
window.__paddock = {progress: [], states: []};
new MutationObserver(() => {
  const bar = document.querySelector('[data-role="job-progress"]');
  if (bar) {
    const value = Number(bar.getAttribute('aria-valuenow'));
    const seen = window.__paddock.progress;
    if (seen[seen.length - 1] !== value) seen.push(value);
  }
  const badge = document.querySelector('[data-role="server-state"]');
  if (badge) {
    const states = window.__paddock.states;
    if (states[states.length - 1] !== badge.dataset.state) states.push(badge.dataset.state);
  }
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


@pytest.fixture
def leave_no_domains(transactional_db):
    """Remove what the test's servers left in the test driver, which outlives the test."""
    yield
    from hosting.backends import get_backend
    from hosting.services.operations import disk_volume

    for server in Server.objects.exclude(state=ServerState.TERMINATED).select_related("host"):
        # a clean-up must not hide the test's own result
        with contextlib.suppress(Exception):
            get_backend(server.host).undefine(server.domain_name, volumes=[disk_volume(server)])


def log_in(page, url: str, user) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def domain_state(server: Server) -> int:
    assert server.host is not None
    conn = libvirt.open(server.host.libvirt_uri)
    try:
        return conn.lookupByName(server.domain_name).state()[0]
    finally:
        conn.close()


def test_create_watch_stop_and_terminate_a_server(
    live_asgi_url, page, celery_worker, slow_jobs, leave_no_domains, owner, plan, image, host, pool
):
    url = live_asgi_url
    frames: list[dict] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))),
    )
    page.add_init_script(WATCH_PROGRESS)

    # given the customer's owner, logged in
    log_in(page, url, owner)
    assert page.locator("h1", has_text="Servers").is_visible()

    # when they create a server in the browser
    page.click("text=New server")
    page.wait_for_url(f"{url}/servers/new/")
    page.click(f"label[for=plan-{plan.pk}]")
    page.select_option("#id_image", str(image.pk))
    page.fill("#id_hostname", "web-1.example.com")
    page.click("button:has-text('Create server')")
    page.wait_for_url(f"{url}/servers/*/")
    page.evaluate("window.__sameDocument = true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-role=\"job-progress\"]')"
        "?.getAttribute('aria-valuenow')) > 30 || document.querySelector("
        '\'[data-role="server-state"][data-state="running"]\')'
    )
    page.screenshot(path=str(SCREENSHOTS / "server-provisioning.png"), full_page=True)

    # then the page follows the provisioning job live and ends "running"
    page.wait_for_selector('[data-role="server-state"][data-state="running"]')
    page.wait_for_selector('#live-indicator[data-connected="true"]')
    page.wait_for_selector('[data-role="power-buttons"] [data-action="stop"]:not([disabled])')
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded instead of updating"
    seen = page.evaluate("window.__paddock")
    intermediate = [p for p in seen["progress"] if 0 < p < 100]
    assert intermediate, f"no progress shown between 0 and 100: {seen}"
    assert seen["progress"] == sorted(seen["progress"]), seen
    assert "running" in seen["states"]
    assert any(f["type"] == "job.update" and f["job"]["status"] == "succeeded" for f in frames)
    assert any(f["type"] == "server.update" and f["server"]["state"] == "running" for f in frames)

    server = Server.objects.get(hostname="web-1.example.com")
    assert server.state == ServerState.RUNNING
    assert domain_state(server) == libvirt.VIR_DOMAIN_RUNNING
    address = server.addresses.get().address
    assert page.locator('[data-role="address"]', has_text=address).is_visible()
    assert page.locator(".job-table", has_text="Succeeded").is_visible()
    page.screenshot(path=str(SCREENSHOTS / "server-page.png"), full_page=True)

    # when they press Stop
    page.click('[data-action="stop"]')
    # then the button's job runs and the state ends "stopped", still without a reload
    page.wait_for_selector('[data-role="server-state"][data-state="stopped"]')
    page.wait_for_selector('[data-role="power-buttons"] [data-action="start"]:not([disabled])')
    assert page.evaluate("window.__sameDocument") is True
    server.refresh_from_db()
    assert server.state == ServerState.STOPPED
    assert domain_state(server) == libvirt.VIR_DOMAIN_SHUTOFF
    assert [j.status for j in server.jobs.all()] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    assert page.locator(".job-table tbody tr").count() == 2

    # when they terminate it, confirming the question
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('[data-action="terminate"]')
    # then it ends "terminated" with no buttons left, and the domain is gone
    page.wait_for_selector('[data-role="server-state"][data-state="terminated"]')
    page.wait_for_selector("text=This server was terminated")
    server.refresh_from_db()
    assert server.state == ServerState.TERMINATED
    with pytest.raises(libvirt.libvirtError):
        domain_state(server)


def test_other_customers_server_page_is_not_found(live_asgi_url, page, other_owner, customer):
    from .factories import ServerFactory

    server = ServerFactory(customer=customer, hostname="acme-secret")
    log_in(page, live_asgi_url, other_owner)
    response = page.goto(f"{live_asgi_url}/servers/{server.uuid}/")
    assert response is not None and response.status == 404
    assert "acme-secret" not in page.content()


def test_server_list_filters_as_you_type(live_asgi_url, page, owner, customer):
    from .factories import ServerFactory

    ServerFactory(customer=customer, hostname="alpha.example.com")
    ServerFactory(customer=customer, hostname="beta.example.com", state=ServerState.STOPPED)
    log_in(page, live_asgi_url, owner)
    rows = page.locator("#server-table tbody tr")
    assert rows.count() == 2
    page.evaluate("window.__sameDocument = true")
    page.fill("input[name=q]", "alp")
    page.wait_for_function("document.querySelectorAll('#server-table tbody tr').length === 1")
    assert "alpha.example.com" in rows.first.inner_text()
    page.fill("input[name=q]", "")
    page.select_option("select[name=state]", "stopped")
    page.wait_for_function(
        "document.querySelector('#server-table tbody tr')?.innerText.includes('beta')"
        " && document.querySelectorAll('#server-table tbody tr').length === 1"
    )
    assert page.evaluate("window.__sameDocument") is True
    assert "state=stopped" in page.url
