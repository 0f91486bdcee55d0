"""Fixtures for the dashboard tests: Debian's headless Chromium driven by Selenium, and a live server.

The browser is the system's ``chromium`` with its matching ``chromedriver``
(Debian packages ``chromium`` and ``chromium-driver``; ``.ci/run`` installs
them). Where either is missing the tests are skipped, and the reason is printed
in the header of every pytest run. Screenshots go to ``NETGROW_SCREENSHOT_DIR``,
or to a ``dashboard-screenshots`` folder under pytest's temporary directory,
whose path is printed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1400,1000", "--lang=en-US")


def find_browser() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or why the browser tests cannot run here."""
    chromium = os.environ.get("NETGROW_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = os.environ.get("NETGROW_CHROMEDRIVER") or shutil.which("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path)
        return f"{missing} not found: install Debian's chromium and chromium-driver (.ci/run does) to run them"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return chromium, driver


BROWSER = find_browser()


def pytest_report_header(config: pytest.Config) -> str:
    if isinstance(BROWSER, str):
        return f"dashboard browser tests (tests/ui): SKIPPED, {BROWSER}"
    version = subprocess.run([BROWSER[0], "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    where = os.environ.get("NETGROW_SCREENSHOT_DIR") or "dashboard-screenshots* in pytest's temporary directory"
    return f"dashboard browser tests (tests/ui): {version or BROWSER[0]} with {BROWSER[1]}; screenshots: {where}"


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("NETGROW_SCREENSHOT_DIR") or tmp_path_factory.mktemp("dashboard-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def open_browser(screenshot_dir: Path) -> Iterator[Callable[[], Any]]:
    """``open_browser()`` starts a headless Chromium session (a fresh profile each); all quit at teardown."""
    if isinstance(BROWSER, str):
        pytest.skip(BROWSER)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = BROWSER
    drivers = []

    def start() -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        driver.set_page_load_timeout(60)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
    print(f"\ndashboard screenshots: {screenshot_dir}")
