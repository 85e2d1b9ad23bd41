"""A real headless Chromium (Debian's `chromium`) driven through its matching `chromedriver` by Selenium, for the
web view's tests. Each browser has a throwaway profile, so cookies never leak from one test to the next."""

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

T = TypeVar("T")

WINDOW = (1280, 900)
PAGE_LOAD_TIMEOUT = 30  # seconds


def _binary(name: str, *fallbacks: str) -> str:
    for candidate in (name, *fallbacks):
        if found := shutil.which(candidate):
            return found
    raise RuntimeError(f"{name} not found: run scripts/setup, or apt-get install chromium chromium-driver")


class Browser:
    def __init__(self, root: Path) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=root))
        options = webdriver.ChromeOptions()
        options.binary_location = _binary("chromium", "chromium-browser")
        for argument in (
            "--headless=new",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--no-proxy-server",  # straight to 127.0.0.1, whatever the environment says
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={self.profile}",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
        self.driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)

    def get(self, url: str) -> None:
        self.driver.get(url)

    def text(self, css: str = "body") -> str:
        return self.driver.find_element("css selector", css).text

    def all_text(self, css: str) -> list[str]:
        return [e.text for e in self.driver.find_elements("css selector", css)]

    def console(self) -> list[dict]:
        """The page's console messages since the last call (CSP violations show here)."""
        return self.driver.get_log("browser")

    def wait(self, probe: Callable[[], T | None], within: float = 10.0, every: float = 0.1) -> T:
        """The first truthy answer of `probe`, asked until `within` seconds pass."""
        deadline = time.monotonic() + within
        last: T | None = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"not within {within:g}s; last answer: {last!r}")

    def screenshot(self, path: Path, full_height: bool = True) -> Path:
        """A PNG of the page; `full_height` grows the window to the page's height first (capped)."""
        if full_height:
            height = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
            self.driver.set_window_size(WINDOW[0], min(max(height, WINDOW[1]), 4000))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(*WINDOW)
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
