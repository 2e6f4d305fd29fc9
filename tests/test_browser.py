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
from hosting.services import jobs as job_service

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


# Every page reports what the Content Security Policy blocked, as a console error.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def page(chromium):
    """A browser page; the test fails if the Content Security Policy blocked anything on
    any page it opened (the panel must work entirely under the policy)."""
    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    violations: list[str] = []
    policies: set[str] = set()
    page.add_init_script(REPORT_CSP_VIOLATIONS)
    page.on(
        "console",
        lambda msg: (
            violations.append(msg.text)
            if msg.type == "error"
            and ("CSP violation" in msg.text or "Security Policy" in msg.text)
            else None
        ),
    )
    page.on(
        "response",
        lambda resp: (
            policies.add(resp.headers.get("content-security-policy", "none"))
            if resp.request.resource_type == "document"
            else None
        ),
    )
    yield page
    context.close()
    assert violations == [], "\n".join(violations)
    # the pages were served under the policy, and it allows no inline code
    assert policies and all("script-src 'self'" in p for p in policies), policies
    assert not any("unsafe-inline" in p or "unsafe-eval" in p for p in policies), policies


@pytest.fixture
def slow_jobs(monkeypatch):
    """Make each recorded job step take a moment, as it does on a real hypervisor."""
    real = job_service.update_progress

    def slow(job, progress, message):
        time.sleep(STEP_DELAY)
        real(job, progress, message)

    monkeypatch.setattr(job_service, "update_progress", slow)


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

    for server in Server.objects.exclude(state=ServerState.TERMINATED).select_related("host"):
        # a clean-up must not hide the test's own result
        with contextlib.suppress(Exception):
            get_backend(server.host).deprovision(server.domain_name)


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
    # (functions, not expressions: Playwright evaluates an expression with eval, which the
    # page's Content Security Policy refuses)
    page.wait_for_function("() => document.querySelectorAll('#server-table tbody tr').length === 1")
    assert "alpha.example.com" in rows.first.inner_text()
    page.fill("input[name=q]", "")
    page.select_option("select[name=state]", "stopped")
    page.wait_for_function(
        "() => document.querySelector('#server-table tbody tr')?.innerText.includes('beta')"
        " && document.querySelectorAll('#server-table tbody tr').length === 1"
    )
    assert page.evaluate("window.__sameDocument") is True
    assert "state=stopped" in page.url


def test_every_page_works_under_the_content_security_policy(
    live_asgi_url, page, owner, customer, server, staff
):
    """Each page of the panel, the admin and the API docs, opened and used: the `page`
    fixture fails the test on any CSP violation."""
    from hosting.choices import JobKind

    from .factories import JobFactory, SSHKeyFactory, make_public_key

    url = live_asgi_url
    JobFactory(server=server, kind=JobKind.START, progress=40, log=["10:00:00 Booting"])
    SSHKeyFactory(customer=customer, name="laptop")
    # the customer's pages
    log_in(page, url, owner)
    page.goto(f"{url}/servers/{server.uuid}/")
    page.wait_for_selector('[data-role="job-progress"]')
    # progress bars get their width from data-width, not from a style attribute
    width = page.eval_on_selector('[data-role="job-progress"] .progress-bar', "e => e.style.width")
    assert width == "40%"
    page.goto(f"{url}/servers/new/")
    page.goto(f"{url}/keys/")
    page.fill("#id_name", "desktop")
    page.fill("#id_public_key", make_public_key(42))
    page.click("button[type=submit]:has-text('Add')")
    page.wait_for_selector("text=desktop")
    # a form that asks first: dismissing keeps the key, accepting deletes it
    delete = 'form[data-confirm*="laptop"] button'
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click(delete)
    assert page.locator(delete).count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(delete)
    page.wait_for_selector("text=SSH key laptop deleted")
    page.goto(f"{url}/tokens/")
    page.click("button[type=submit]:has-text('Create')")
    page.wait_for_selector("#new-token-key")
    # the staff pages, the admin and the API docs
    page.context.clear_cookies()
    log_in(page, url, staff)
    page.goto(f"{url}/ops/")
    assert page.eval_on_selector(".meter-cell .progress-bar", "e => e.style.width") != ""
    for path in (
        "/admin/",
        "/admin/hosting/server/",
        f"/admin/hosting/server/{server.pk}/change/",
        f"/admin/hosting/job/{server.jobs.get().pk}/change/",
        "/admin/hosting/host/add/",
    ):
        page.goto(f"{url}{path}")
    page.goto(f"{url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info")


# --- live usage charts (issue 8) -------------------------------------------------------
#
# The samples are published here, contract-shaped, through the channel layer (group_send
# to server.<uuid>, as the stats collector does), so that the browser path is tested on
# its own: channel layer -> consumer -> socket -> paddock.js -> charts.js -> uPlot.


def off_thread(fn):
    """Run fn in a thread of its own: Playwright's sync API keeps an event loop in this
    thread, where async_to_sync (the channel layer, on_commit publishing) refuses to run."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def publish_sample(server: Server, t: float, cpu: float) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from hosting.services.events import server_group

    message = {
        "type": "stats.sample",
        "sample": {
            "server": str(server.uuid),
            "t": t,
            "cpu_pct": cpu,
            "mem_used_mib": 200 + int(cpu),
            "mem_total_mib": 1024,
            "disk_rd_bps": 1000.0 * cpu,
            "disk_wr_bps": 500.0,
            "disk_rd_iops": 1.0,
            "disk_wr_iops": 2.0,
            "net_rx_bps": 20000.0 + cpu,
            "net_tx_bps": 3000.0,
            "net_rx_pps": 20.0,
            "net_tx_pps": 5.0,
        },
    }
    off_thread(
        lambda: async_to_sync(get_channel_layer().group_send)(
            f"{server_group(server.uuid)}", message
        )
    )


def cpu_points(page) -> int:
    return int(page.get_attribute('[data-chart="cpu"]', "data-points") or 0)


def open_live_server_page(page, url: str, user, server: Server) -> list[dict]:
    frames: list[dict] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda payload: frames.append(json.loads(payload))),
    )
    log_in(page, url, user)
    page.goto(f"{url}/servers/{server.uuid}/")
    page.wait_for_selector('#live-indicator[data-connected="true"]')
    page.evaluate("window.__sameDocument = true")
    return frames


def test_cpu_chart_gains_points_live_without_a_reload(live_asgi_url, page, owner, server):
    # given the owner on a running server's page, its socket connected
    open_live_server_page(page, live_asgi_url, owner, server)
    # (no history yet: the chart is empty until samples come)
    page.wait_for_selector('[data-role="charts-status"]:has-text("Last hour")')
    assert cpu_points(page) == 0
    # when a sample a second arrives for 10 s
    start = time.time()
    seen = []
    for i in range(10):
        publish_sample(server, start + i, cpu=10.0 + i)
        page.wait_for_function(
            "n => Number(document.querySelector('[data-chart=\"cpu\"]').dataset.points) >= n",
            arg=i + 1,
        )
        seen.append(cpu_points(page))
        time.sleep(max(0.0, start + i + 1 - time.time()))
    # then the CPU chart gained a point with each, in the same document
    assert seen == list(range(1, 11))
    assert page.evaluate("window.__sameDocument") is True
    # and every chart drew them (uPlot's legend shows the last value under the cursor)
    for chart in ("cpu", "memory", "disk", "network"):
        assert page.get_attribute(f'[data-chart="{chart}"]', "data-points") == "10"
        assert page.locator(f'[data-chart="{chart}"] canvas').count() == 1
    page.screenshot(path=str(SCREENSHOTS / "server-charts.png"), full_page=True)


def test_another_customers_browser_cannot_subscribe(live_asgi_url, page, other_owner, server):
    # given Globex's owner logged in, when their browser opens Acme's server stream
    log_in(page, live_asgi_url, other_owner)
    outcome = page.evaluate(
        """path => new Promise(resolve => {
            const socket = new WebSocket("ws://" + location.host + path);
            socket.onopen = () => resolve("open");
            socket.onclose = () => resolve("refused");
        })""",
        f"/ws/servers/{server.uuid}/",
    )
    # then the socket is refused
    assert outcome == "refused"


def test_removed_member_stops_receiving_within_one_sample(
    live_asgi_url, page, owner, server, customer
):
    # given the owner watching the charts, samples arriving
    frames = open_live_server_page(page, live_asgi_url, owner, server)
    start = time.time()
    publish_sample(server, start, cpu=5.0)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-chart=\"cpu\"]').dataset.points) === 1"
    )
    # when the membership is removed (the revocation event goes out after commit)
    off_thread(lambda: owner.memberships.all().delete())
    # and the next sample is published
    publish_sample(server, start + 1, cpu=6.0)
    publish_sample(server, start + 2, cpu=7.0)
    # then the socket was closed as withdrawn, the page says so and does not reconnect
    page.wait_for_selector('#live-indicator[data-failed="true"]:has-text("Access withdrawn")')
    samples = [f["sample"]["t"] for f in frames if f.get("type") == "stats.sample"]
    assert samples == [start]
    assert cpu_points(page) == 1


def publish_host(host, cpu: float, mem_used: int, top: list[dict]) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from hosting.services.events import FLEET_GROUP

    message = {
        "type": "stats.host",
        "host": {
            "id": host.pk,
            "name": host.name,
            "t": time.time(),
            "cpu_pct": cpu,
            "vcpus_used": 3,
            "vcpus_capacity": 16,
            "mem_used_mib": mem_used,
            "mem_capacity_mib": 16384,
            "disk_used_gib": 100,
            "disk_capacity_gib": 1000,
            "servers": len(top),
            "top": top,
        },
    }
    off_thread(lambda: async_to_sync(get_channel_layer().group_send)(FLEET_GROUP, message))


def test_fleet_page_shows_hosts_live_and_overloaded_ones_stand_out(
    live_asgi_url, page, staff, host, server
):
    from .factories import HostFactory

    quiet = HostFactory(name="quiet-host")
    # given staff on the fleet page, its socket connected
    log_in(page, live_asgi_url, staff)
    page.goto(f"{live_asgi_url}/ops/fleet/")
    page.wait_for_selector('#live-indicator[data-connected="true"]')
    # when a busy host and a quiet one report
    publish_host(
        host, 97.0, 4096, [{"server": str(server.uuid), "hostname": "web-1", "cpu_pct": 88.0}]
    )
    publish_host(quiet, 12.0, 15000, [])
    # then the busy host stands out with its busiest server, the other by its memory
    busy = f'tr[data-host-id="{host.pk}"]'
    page.wait_for_selector(f'{busy}[data-cpu="97.0"][data-overloaded="true"]')
    link = page.locator(f'{busy} [data-role="top"] a')
    assert link.inner_text() == "web-1"
    assert link.get_attribute("href") == f"/servers/{server.uuid}/"
    # 15000 of 16384 MiB is 92 %: overloaded too
    page.wait_for_selector(
        f'tr[data-host-id="{quiet.pk}"][data-cpu="12.0"][data-overloaded="true"]'
    )
    publish_host(quiet, 12.0, 2000, [])
    page.wait_for_selector(f'tr[data-host-id="{quiet.pk}"][data-overloaded="false"]')
    assert page.locator(f'tr[data-host-id="{quiet.pk}"] [data-role="top"]').inner_text() == (
        "no servers running"
    )
    page.screenshot(path=str(SCREENSHOTS / "fleet.png"), full_page=True)


def test_charts_paint_history_first_and_switch_ranges(live_asgi_url, page, owner, server):
    from datetime import timedelta

    from django.utils import timezone

    from hosting.models.stats import ServerStatsHour, ServerStatsMinute

    # given 30 minutes and 5 hours of rollups for the server
    now = timezone.now().replace(second=0, microsecond=0)
    common = {"samples": 30, "seconds": 60.0, "cpu_pct_avg": 20.0, "mem_total_mib": 1024}
    ServerStatsMinute.objects.bulk_create(
        ServerStatsMinute(server=server, bucket=now - timedelta(minutes=m), **common)
        for m in range(1, 31)
    )
    hour = now.replace(minute=0)
    ServerStatsHour.objects.bulk_create(
        ServerStatsHour(server=server, bucket=hour - timedelta(hours=h), **common)
        for h in range(1, 6)
    )
    # when the owner opens the page, then the last hour is painted before any sample
    open_live_server_page(page, live_asgi_url, owner, server)
    page.wait_for_selector('[data-role="charts-status"]:has-text("Last hour")')
    assert cpu_points(page) == 30
    # and a live sample adds to it
    publish_sample(server, time.time(), cpu=50.0)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-chart=\"cpu\"]').dataset.points) === 31"
    )
    # when they pick 7 days, then the hourly points replace them
    page.click('button[data-range="7d"]')
    page.wait_for_selector('[data-role="charts-status"]:has-text("Last 7d")')
    assert cpu_points(page) == 5
    assert page.get_attribute('button[data-range="7d"]', "aria-pressed") == "true"


def test_console_shows_the_tail_and_what_follows_without_polling(
    live_asgi_url, page, owner, server
):
    from datetime import timedelta

    from django.core.cache import cache
    from django.utils import timezone

    from hosting.services import console

    # given a tail a worker read, holding markup
    first = console.ConsoleTail(text="boot\n<b>not bold</b>\n", fetched_at=timezone.now())
    cache.set(f"console:{server.uuid}", first.__dict__)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    # when the owner opens the page: the tail, as text
    open_live_server_page(page, live_asgi_url, owner, server)
    box = "#console-tail .console-text"
    page.wait_for_function(
        "s => document.querySelector(s).textContent.includes('not bold')", arg=box
    )
    assert page.locator(f"{box} b").count() == 0
    assert page.text_content(box) == "boot\n<b>not bold</b>\n"
    # and when a worker stores a newer read, its new line appears in the same document
    later = console.ConsoleTail(
        text=first.text + "paddock-guest ready\n",
        fetched_at=first.fetched_at + timedelta(seconds=2),
    )
    off_thread(lambda: console.store(server, later, previous=first))
    page.wait_for_function(
        "s => document.querySelector(s).textContent.endsWith('paddock-guest ready\\n')", arg=box
    )
    assert page.text_content(box) == later.text
    assert page.evaluate("window.__sameDocument") is True
    # the page never polled for the console
    assert not [url for url in requests if "/console/" in url]
    cache.delete(f"console:{server.uuid}")


def test_snapshots_and_a_deleted_servers_backup_in_the_panel(
    live_asgi_url,
    page,
    celery_worker,
    leave_no_domains,
    owner,
    customer,
    plan,
    image,
    host,
    pool,
    settings,
    tmp_path,
):
    """Snapshots taken, reverted and deleted on the server page; a backup listed and verified
    on the server's page; a terminated server's backup restored into a new server from
    "Deleted servers" (on the test driver, whose disks hold nothing: the backups are real,
    empty qcow2 files in a real store)."""
    import subprocess

    from django.utils import timezone

    from hosting.access import Caller
    from hosting.backups.store import LocalStore
    from hosting.choices import BackupStatus
    from hosting.models import Backup, Job
    from hosting.services.backups import object_key
    from hosting.services.servers import create_server

    from .factories import ServerFactory

    def store_disk(backup: Backup, disk) -> None:
        with LocalStore(settings.BACKUP_STORE).put(object_key(backup)) as writer:
            writer.write(disk.read_bytes())
            stored = writer.close()
        backup.manifest = {
            "disks": [{"name": "vda", "format": "qcow2", "object": stored.as_dict()}]
        }
        backup.save()

    settings.BACKUP_STORE = str(tmp_path / "store")
    settings.BACKUP_STAGING = str(tmp_path / "staging")
    plan.snapshot_slots = 2
    plan.save()
    server, job = create_server(
        customer=customer, plan=plan, image=image, hostname="snappy", caller=Caller(user=owner)
    )
    deadline = time.monotonic() + 30
    while Job.objects.get(pk=job.pk).status != JobStatus.SUCCEEDED:
        assert time.monotonic() < deadline, Job.objects.get(pk=job.pk).log
        time.sleep(0.2)

    log_in(page, live_asgi_url, owner)
    page.goto(f"{live_asgi_url}/servers/{server.uuid}/")
    page.fill("[data-role=snapshots] input[name=name]", "before upgrade")
    page.click('[data-action="snapshot-create"]')
    page.wait_for_selector('[data-snapshot] .badge:has-text("Ready")')
    assert page.locator('[data-role="snapshot-slots"]').inner_text() == "1 of 2 slots"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('[data-action="snapshot-revert"]')
    page.wait_for_selector('[data-role="server-state"][data-state="stopped"]')
    page.wait_for_selector('[data-action="snapshot-delete"]:not([disabled])')
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('[data-action="snapshot-delete"]')
    page.wait_for_selector("[data-snapshot]", state="detached")
    assert not server.snapshots.exists()

    # a backup of this server in the store, listed on its page and verified from there (the
    # test driver has no backup capability: restoring onto the server needs a real host,
    # tests/system/test_backups.py; restoring into a new server is below)
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "64M"], check=True)
    own = Backup.objects.create(
        server=server, customer=customer, status=BackupStatus.COMPLETE, completed_at=timezone.now()
    )
    store_disk(own, disk)
    page.reload()
    row = page.locator(f'[data-role="backups"] [data-backup="{own.uuid}"]')
    assert "Complete" in row.inner_text()
    row.locator('[data-action="backup-verify"]').click()
    row.locator(".badge:has-text('verified')").wait_for()
    assert Backup.objects.get(pk=own.pk).verified_ok is True

    # a server terminated with a backup kept; its customer restores it into a new one
    old = ServerFactory(
        customer=customer, plan=plan, image=image, host=host, hostname="gone",
        state=ServerState.TERMINATED, terminated_at=timezone.now(),
    )  # fmt: skip
    backup = Backup.objects.create(
        server=old, customer=customer, status=BackupStatus.COMPLETE, completed_at=timezone.now()
    )
    store_disk(backup, disk)
    page.goto(f"{live_asgi_url}/")
    page.click("text=Deleted servers")
    row = page.locator(f'[data-backup="{backup.uuid}"]')
    row.locator("input[name=hostname]").fill("phoenix")
    row.locator('[data-action="backup-restore-new"]').click()
    page.wait_for_url(f"{live_asgi_url}/servers/*/")
    page.wait_for_selector('[data-role="server-state"][data-state="running"]')
    reborn = Server.objects.get(hostname="phoenix")
    assert reborn.jobs.get().params == {"restore_backup": backup.pk}
    assert "Reading the backup" in " ".join(reborn.jobs.get().log)
