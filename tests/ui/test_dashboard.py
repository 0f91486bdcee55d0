"""The dashboard as a person uses it: a real headless Chromium against the real embedded server.

A user pastes their key, is shown a validation error next to the field it
names, submits examples/smoke.json, watches the timeline redraw as epochs
arrive until the job succeeds, and compares it; a second user's browser never
sees the first user's jobs. Screenshots of each step are saved (see conftest.py).
"""
from __future__ import annotations

import json
from urllib.parse import unquote
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.api_support import LiveApi, dense_spec, running_api, smoke_spec, wait_finished

pytestmark = pytest.mark.service

WAIT_SECONDS = 120  # guards against a hang only; nothing here asserts how fast anything is


@pytest.fixture
def api(settings_env: Callable[..., Any], sqlite_url: str) -> Iterator[LiveApi]:
    """The embedded deployment (SQLite, jobs run in the server's process), as `netgrow serve` runs it."""
    settings = settings_env(database_url=sqlite_url, broker_url=None)
    with running_api(settings, run_jobs=True) as live:
        yield live


class Page:
    """One browser tab on the dashboard, with the few actions the tests need."""

    def __init__(self, driver: Any, base_url: str, screenshots: Path) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base_url = base_url
        self.screenshots = screenshots
        self.by = By
        # Views re-render as data arrives: an element read in between is looked up again.
        self.wait = WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05,
                                  ignored_exceptions=[StaleElementReferenceException])

    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.base_url}/ui/{fragment}")

    def go(self, fragment: str) -> None:
        self.driver.execute_script("location.hash = arguments[0]", fragment)

    def find(self, css: str) -> Any:
        return self.wait.until(lambda driver: driver.find_element(self.by.CSS_SELECTOR, css))

    def find_all(self, css: str) -> list[Any]:
        return self.driver.find_elements(self.by.CSS_SELECTOR, css)

    def until(self, condition: Callable[[], Any], message: str) -> Any:
        return self.wait.until(lambda _: condition(), message)

    def attribute(self, css: str, name: str) -> str | None:
        elements = self.find_all(css)
        return elements[0].get_attribute(name) if elements else None

    def sign_in(self, key: str) -> None:
        self.open()
        field = self.find("#api-key")
        field.send_keys(key)
        self.find("#key-form button[type=submit]").click()
        self.until(lambda: self.attribute("#view", "data-loaded") == "jobs", "the jobs list after signing in")

    def screenshot(self, name: str) -> Path:
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1400, min(max(int(height), 700), 2400))
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(1400, 1000)
        return path

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def blob_text(self, css: str) -> str:
        """The content behind an <img> whose src is a blob: URL (the plot the page fetched)."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(document.querySelector(arguments[0]).src).then(r => r.text()).then(done, e => done(String(e)));",
            css)


@pytest.fixture
def page(open_browser: Callable[[], Any], api: LiveApi, screenshot_dir: Path) -> Page:
    return Page(open_browser(), api.url, screenshot_dir)


def test_a_user_submits_the_smoke_job_watches_it_grow_and_compares_it(page: Page, api: LiveApi) -> None:
    # The key form, and a key the server does not know.
    page.open()
    page.find("#api-key").send_keys("ng_not-a-key")
    page.find("#key-form button[type=submit]").click()
    page.until(lambda: "not accepted" in page.find("#key-error").text, "the refused-key message")
    page.screenshot("01-key")
    key = api.key("alice")
    page.sign_in(key)
    assert "no jobs yet" in page.find("#view").text

    # A spec with a bad width: the server's error appears under the line of the field it names.
    page.go("#/submit")
    text = page.find("#spec-text")
    assert json.loads(text.get_attribute("value")) == smoke_spec()  # examples/smoke.json is preselected
    bad = smoke_spec(model={"family": "vgg", "layers": [4, "M", -3]})
    page.driver.execute_script("arguments[0].value = arguments[1]", text, json.dumps(bad, indent=2))
    page.find("#submit-job").click()
    error = page.find('.field-error[data-field="model.layers[2]"]')
    assert "model.layers[2]" in error.text
    line = page.driver.execute_script("return arguments[0].previousElementSibling", error)
    assert line.get_attribute("data-path") == "model.layers[2]" and "-3" in line.text
    assert "invalid" in line.get_attribute("class")
    page.screenshot("02-submit-error")

    # The smoke job: submitted from the example, followed live to the end.
    page.find("#example-picker option[value=smoke]").click()
    page.find("#load-example").click()
    assert json.loads(page.find("#spec-text").get_attribute("value")) == smoke_spec()
    assert page.find_all(".field-error") == []
    page.find("#submit-job").click()
    page.until(lambda: "#/jobs/" in page.driver.current_url, "the job page after submitting")
    job_id = page.driver.current_url.rsplit("/", 1)[-1]
    # A dense baseline for the comparison, queued behind it (sent over the API, not the page).
    alice = api.client(key)
    dense = alice.post("/v1/jobs", json=dense_spec())
    assert dense.status_code == 201, dense.text
    other_owner = httpx.get(f"{api.url}/v1/jobs/{job_id}/plots/timeline.svg",
                            headers={"Authorization": f"Bearer {api.key('mallory')}"})
    assert other_owner.status_code == 404  # the job is alice's alone, its pictures too
    drawn: list[int] = []

    def finished() -> bool:
        epochs = page.attribute("#plot-timeline", "data-epochs")
        status = page.attribute("#view", "data-status")
        if epochs and (not drawn or int(epochs) != drawn[-1]):
            drawn.append(int(epochs))
            if status == "running" and drawn[-1] > 0:
                page.screenshot("03-job-running")  # the latest picture of the job while it runs
        total = page.find("#job-progress progress").get_attribute("max")
        return status in ("succeeded", "failed", "canceled") and all(
            page.attribute(f"#plot-{name}", "data-epochs") == total for name in ("timeline", "heatmap", "curves"))

    page.until(finished, "the job to succeed with its three plots drawn to the last epoch")
    assert page.attribute("#view", "data-status") == "succeeded", page.find("#job-notice").text
    epochs_total = int(page.find("#job-progress progress").get_attribute("max"))
    assert len(drawn) >= 2 and drawn == sorted(drawn), f"the timeline was redrawn as epochs arrived: {drawn}"
    assert drawn[-1] == epochs_total
    svg = page.blob_text("#plot-timeline")
    assert 'id="width-conv1"' in svg and 'id="width-conv2"' in svg  # the server's timeline, both units drawn
    assert "widened" in page.find("#job-events").text  # the smoke job grows once
    assert page.find("#download-weights").is_displayed()
    assert page.find("#stat-accuracy").text.endswith("%")
    page.screenshot("04-job-succeeded")

    # The jobs list, newest first, and filtered to succeeded jobs.
    dense_id = wait_finished(alice, dense.json()["id"])["id"]
    page.go("#/jobs")
    page.until(lambda: [row.get_attribute("data-job-id") for row in page.find_all("#jobs-table tbody tr")]
               == [dense_id, job_id], "both jobs, newest first")
    page.screenshot("05-jobs")
    page.go("#/jobs?method=dense")
    page.until(lambda: [row.get_attribute("data-job-id") for row in page.find_all("#jobs-table tbody tr")]
               == [dense_id], "the dense job alone")
    page.go("#/jobs?status=succeeded&method=grow")
    row = page.find(f'tr[data-job-id="{job_id}"]')
    assert "succeeded" in row.text and "grow" in row.text and "digits" in row.text

    # Compare: pick both jobs, see Tables 4/5 and the chart.
    page.go("#/compare")
    page.find(f'#compare-picker input[value="{dense_id}"]').click()
    page.find(f'#compare-picker input[value="{job_id}"]').click()
    page.find("#compare-submit").click()
    page.until(lambda: page.attribute("#view", "data-loaded") == "compare", "the comparison")
    assert f"ids={dense_id},{job_id}" in unquote(page.driver.current_url)  # ticking order: the baseline first
    table4 = page.find("#table4").text
    assert "conv1" in table4 and "Params" in table4 and "Test accuracy" in table4
    assert f"dense {dense_id[:8]}" in table4 and f"grow {job_id[:8]}" in table4
    table5 = page.find("#table5").text
    assert "Relative params" in table5 and "1.00×" in table5
    chart = page.blob_text("#compare-chart")
    assert "<svg" in chart and ">dense<" in chart and ">grow<" in chart
    page.screenshot("06-compare")
    # Only the refusals the user was shown reached the console: no script error, no blocked resource.
    unexpected = [message for message in page.console_errors()
                  if not ("Failed to load resource" in message and ("401" in message or "422" in message))]
    assert unexpected == []


def test_a_second_key_never_sees_the_first_keys_jobs(page: Page, api: LiveApi,
                                                      open_browser: Callable[[], Any]) -> None:
    alice = api.user("alice")
    job_id = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]
    wait_finished(alice, job_id)

    page.sign_in(api.key("bob"))
    assert page.find_all("#jobs-table tbody tr") == [] and "no jobs yet" in page.find("#view").text
    page.go(f"#/jobs/{job_id}")
    notice = page.find("#view .notice.error")
    assert f"No job {job_id} among your jobs" in notice.text
    page.go("#/compare")
    page.until(lambda: "No finished job yet" in page.find("#compare-picker").text, "bob's empty picker")
    page.go(f"#/compare?ids={job_id}")
    page.until(lambda: f"no job {job_id}" in page.find("#compare-result").text, "the 404 for alice's job")
    page.screenshot("07-other-owner")

    # Alice, in her own browser session, sees her job; the key stays out of every URL.
    alice_page = Page(open_browser(), api.url, page.screenshots)
    alice_page.sign_in(api.key("alice"))
    assert alice_page.find(f'tr[data-job-id="{job_id}"]')
    assert "ng_" not in alice_page.driver.current_url
    # "Forget key" removes it from the tab: the key form comes back.
    alice_page.find("#forget-key").click()
    assert alice_page.find("#api-key")
    assert alice_page.driver.execute_script("return sessionStorage.length") == 0
    # The only errors bob's browser logged are the 404s it was given for alice's job.
    assert all("404" in message for message in page.console_errors())


def test_the_page_is_served_offline_with_a_strict_content_security_policy(api: LiveApi) -> None:
    index = httpx.get(f"{api.url}/ui", follow_redirects=True)
    assert index.status_code == 200 and index.url.path == "/ui/"
    policy = index.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    body = index.text
    assert "http://" not in body and "https://" not in body  # nothing from another origin
    for path in ("js/app.js", "js/api.js", "style.css"):
        response = httpx.get(f"{api.url}/ui/{path}")
        assert response.status_code == 200 and "https://" not in response.text, path
    assert httpx.get(f"{api.url}/ui/js/app.js").headers["content-type"].startswith(("text/javascript",
                                                                                     "application/javascript"))
    meta = httpx.get(f"{api.url}/ui/meta.json").json()
    assert meta["examples"]["smoke"] == smoke_spec() and "grow" in meta["methods"] and "running" in meta["statuses"]
