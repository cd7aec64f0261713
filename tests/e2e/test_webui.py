"""The master's web UI in a real browser: a secure local cluster (one agent and the jobs service), Debian's
chromium headless through selenium and chromium-driver, logged in with a bearer token. One cluster and one
browser for the module; the jobs are submitted once, at the start, so that they run while the pages are read.
Each test saves a screenshot of what it asserted on (its path is printed; pytest keeps the tmp dirs)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench import browser
from scheduler_sdk.driver import Scheduler
from scheduler_sdk.frameworks.jobs.client import JobsClient
from scheduler_sdk.local_cluster import LocalCluster
from scheduler_sdk.security.credentials import add_token
from scheduler_sdk.security.local import LocalCertificates
from tests.conftest import module_tmp_path
from tests.e2e.conftest import FAST_AGENT, FAST_MASTER
from tests.e2e.harness import framework

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(browser.missing()), reason=browser.missing() or "ok")]

HELLO = "name: webui-hello\ncommand: echo hello-from-the-ui; sleep 1; echo bye\nresources: {cpus: 0.1, mem: 32}\n"
TICKER = (
    "name: webui-ticker\ncommand: for i in $(seq 1 20); do echo tick-$i; sleep 0.3; done\n"
    "resources: {cpus: 0.1, mem: 32}\n"
)
FLOW = """name: webui-flow
type: workflow
steps:
  - {name: fetch, command: "true"}
  - {name: build, command: "true", depends_on: [fetch]}
  - {name: lint, command: "true", depends_on: [fetch]}
  - {name: ship, command: "true", depends_on: [build, lint]}
"""
WAIT = 20.0


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return module_tmp_path(tmp_path_factory, "webui")


@pytest.fixture(scope="module")
def starting_browser(work_dir: Path, cluster_ca: LocalCertificates) -> Iterator[Future[Any]]:
    """Chromium, started (in a thread) while the cluster starts: it trusts the master's certificate, made here
    first (the cluster uses the certificates it finds)."""
    master_cert, _ = LocalCertificates(work_dir / "certs", cluster_ca.directory).issue("master", "master")
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(browser.headless, master_cert)
        try:
            yield starting
        finally:
            starting.result().quit()


async def start(c: LocalCluster) -> None:
    """As LocalCluster.start, with the agent and the jobs service starting at once (they need only the master)."""
    await c.start_master()
    c.add_agent(0)
    await asyncio.gather(c.wait_for_agents(1), c.start_jobs(), c.wait_for_http())


@pytest.fixture(scope="module")
def cluster(starting_browser: Future[Any], work_dir: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(
        work_dir,
        agents=1,
        master_flags=list(FAST_MASTER),
        agent_flags=list(FAST_AGENT),
        jobs=True,
    )
    try:
        asyncio.run(start(c))
        yield c
    finally:
        leftovers = asyncio.run(c.stop())
    assert leftovers == [], f"left behind: {leftovers}"


@pytest.fixture(scope="module")
def token(cluster: LocalCluster) -> str:
    assert cluster.certificates is not None
    return add_token(cluster.certificates.credentials, "webui", "operator")


async def submit(cluster: LocalCluster, spec: str) -> str:
    async with JobsClient(cluster.jobs_address, config=cluster.client_config) as client:
        return (await client.submit(spec, "webui.yaml")).job_id


@pytest.fixture(scope="module")
def jobs(cluster: LocalCluster) -> dict[str, str]:
    """The module's jobs, submitted as the browser starts: job name -> job id."""

    async def both() -> list[str]:
        return list(await asyncio.gather(submit(cluster, TICKER), submit(cluster, FLOW)))

    ticker, flow = asyncio.run(both())
    return {"webui-ticker": ticker, "webui-flow": flow}


@pytest.fixture(scope="module")
def driver(starting_browser: Future[Any], cluster: LocalCluster, token: str, jobs: dict[str, str]) -> Any:
    d = starting_browser.result()
    browser.login(d, cluster.master_http_url, token)
    return d


def until(driver: Any, condition: Any, what: str, timeout: float = WAIT) -> Any:
    """Poll `condition(driver)` (exceptions count as not yet) until it is truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception as e:  # stale elements while the script updates the page, not there yet
            last = e
        time.sleep(0.1)
    shown = driver.find_element("tag name", "main").text[:3000]
    raise AssertionError(f"{what}: not within {timeout} s ({last!r}); page: {driver.current_url}\n{shown}")


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def css(driver: Any, selector: str) -> list[Any]:
    return list(driver.find_elements("css selector", selector))


def text(driver: Any, selector: str) -> str:
    return " ".join(e.text for e in css(driver, selector))


def test_login_then_the_overview_and_an_agent_row(driver: Any, cluster: LocalCluster, tmp_path: Path) -> None:
    until(driver, lambda d: "Allocation by role" in d.page_source, "the overview after the login")
    assert "operator/webui" in text(driver, "header .who")
    assert css(driver, '#roles tr[data-role="*"]') and css(driver, "#resources tbody tr")
    screenshot(driver, tmp_path, "overview")
    driver.get(cluster.master_http_url + "/agents")
    row = until(driver, lambda d: css(d, "#agents tr[data-agent]"), "an agent row")[0]
    assert "agent0.local" in row.text and "active" in row.text
    screenshot(driver, tmp_path, "agents")
    row.find_element("css selector", "a").click()
    usage = until(driver, lambda d: css(d, "#usage tbody tr[data-task]"), "the agent's measured usage")
    assert "webui-" in usage[0].text


def test_a_task_page_shows_its_history_and_follows_its_log(
    driver: Any, cluster: LocalCluster, jobs: dict[str, str], tmp_path: Path
) -> None:
    base = cluster.master_http_url
    driver.get(base + "/tasks?name=webui-ticker")
    link = until(driver, lambda d: css(d, '#tasks tr[data-task*="webui-ticker"] a[data-field="task_id"]'), "ticker")
    link[0].click()
    until(driver, lambda d: "TASK_RUNNING" in text(d, "#statuses"), "the status history")
    assert "tick-1" in text(driver, "#log-stdout")  # the tail, read by the master from the agent
    assert "TASK_FINISHED" not in text(driver, "#statuses") and "tick-20" not in text(driver, "#log-stdout")
    driver.find_element("css selector", "button.follow").click()  # still running: follow its log as it grows
    until(driver, lambda d: "tick-20" in text(d, "#log-stdout"), "the log's last line, followed", timeout=30)
    log = text(driver, "#log-stdout")
    assert log.split() == [f"tick-{i}" for i in range(1, 21)], log  # the tail, then what followed: once each
    history = until(driver, lambda d: "TASK_FINISHED" in text(d, "#statuses") and text(d, "#statuses"), "finished")
    assert history.index("TASK_FINISHED") < history.index("TASK_RUNNING")  # the latest first, added live
    screenshot(driver, tmp_path, "task-page")


def test_a_task_reaches_finished_on_the_open_page_without_reload(
    driver: Any, cluster: LocalCluster, jobs: dict[str, str], tmp_path: Path
) -> None:
    driver.get(cluster.master_http_url + "/tasks?name=webui-hello")
    driver.execute_script("window.notReloaded = true")
    until(driver, lambda d: text(d, "#live") == "live", "the live stream")
    assert not css(driver, '#tasks tr[data-task*="webui-hello"]')
    asyncio.run(submit(cluster, HELLO))  # the page is open: its row comes from the event stream
    row = '#tasks tr[data-task*="webui-hello"] [data-field="state"]'
    until(driver, lambda d: text(d, row) in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"), "the task, running")
    until(driver, lambda d: text(d, row) == "TASK_FINISHED", "the task, finished, on the open page")
    assert driver.execute_script("return window.notReloaded === true"), "the page was reloaded"
    assert int(driver.execute_script("return Number(document.body.dataset.events || 0)")) >= 2
    screenshot(driver, tmp_path, "task-finished-live")


def test_filters_narrow_the_tasks(driver: Any, cluster: LocalCluster, jobs: dict[str, str], tmp_path: Path) -> None:
    base = cluster.master_http_url
    driver.get(base + "/tasks?state=TASK_FINISHED")
    until(driver, lambda d: css(d, '#tasks tr[data-task*="webui-hello"]'), "the finished task under its filter")
    states = {e.text for e in css(driver, '#tasks [data-field="state"]')}
    assert states == {"TASK_FINISHED"}, states
    driver.find_element("name", "name").send_keys("webui-flow")
    driver.find_element("css selector", "#filters button[type=submit]").click()
    until(driver, lambda d: "name=webui-flow" in d.current_url, "the filter's page")
    names = {e.text for e in css(driver, '#tasks [data-field="name"]')}
    assert names and all("webui-flow" in n for n in names), names
    driver.get(base + "/tasks?state=TASK_RUNNING&name=webui-hello")
    assert not css(driver, "#tasks tr[data-task]")
    screenshot(driver, tmp_path, "tasks-filtered")


def test_a_job_page_shows_its_dag_and_tasks(
    driver: Any, cluster: LocalCluster, jobs: dict[str, str], tmp_path: Path
) -> None:
    driver.get(cluster.master_http_url + "/jobs")
    link = until(driver, lambda d: d.find_element("link text", jobs["webui-flow"]), "the workflow in the jobs list")
    assert "webui-ticker" in text(driver, "#jobs")
    link.click()
    until(driver, lambda d: len(css(d, "#job-tasks tr[data-task]")) == 4, "the workflow's four tasks")
    layers = [
        [s.get_attribute("data-step") for s in layer.find_elements("css selector", ".step")]
        for layer in css(driver, "#dag .layer")
    ]
    assert layers == [["fetch"], ["build", "lint"], ["ship"]], layers

    def done(d: Any) -> bool:  # a job's steps are the jobs service's: read again, not streamed
        if text(d, '#dag [data-step="ship"] .badge') == "succeeded":
            return True
        time.sleep(0.3)
        d.refresh()
        return False

    until(driver, done, "the workflow, done", timeout=30)
    codes = [row.find_elements("tag name", "td")[7].text for row in css(driver, "#job-tasks tr[data-task]")]
    assert codes == ["0", "0", "0", "0"], codes
    screenshot(driver, tmp_path, "job-dag")


def test_a_framework_that_subscribes_appears_on_the_open_list(
    driver: Any, cluster: LocalCluster, tmp_path: Path
) -> None:
    driver.get(cluster.master_http_url + "/frameworks")
    until(driver, lambda d: text(d, "#live") == "live", "the live stream")
    assert "webui-probe" not in text(driver, "#frameworks")

    async def subscribed() -> None:
        async with framework(cluster.master_address, Scheduler(), name="webui-probe", config=cluster.client_config):
            await asyncio.to_thread(
                until, driver, lambda d: "webui-probe" in text(d, "#frameworks"), "the new framework's row"
            )
            screenshot(driver, tmp_path, "frameworks-live")

    asyncio.run(subscribed())
    row = until(driver, lambda d: "removed" in text(d, "#frameworks"), "the framework, torn down")
    assert row


def test_a_client_certificate_works_too_and_nothing_without_one(cluster: LocalCluster) -> None:
    config = cluster.client_config
    assert config.ca is not None and config.cert is not None and config.key is not None

    async def get(cert: bool) -> tuple[int, str]:
        context = ssl.create_default_context(cafile=str(config.ca))
        if cert:
            context.load_cert_chain(str(config.cert), str(config.key))
        url = cluster.master_http_url + "/tasks"
        async with aiohttp.ClientSession() as session, session.get(url, ssl=context, allow_redirects=False) as r:
            return r.status, await r.text()

    status, body = asyncio.run(get(cert=True))
    assert status == 200 and "operator/admin" in body
    status, body = asyncio.run(get(cert=False))
    assert status == 401 and len(body.strip().splitlines()) == 1
