"""Debian's chromium, headless, driven by selenium through chromium-driver: what the web UI's tests and its
first-paint bench use (`make system-deps` installs both). The browser trusts exactly the master's certificate
(its public key pinned with --ignore-certificate-errors-spki-list), as a browser given the cluster's CA would."""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing() -> str:
    """Why a browser cannot be started here ("" when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and shutil.which(Path(path).name) is None:
            return f"{path} is not installed (make system-deps: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[dev])"
    return ""


def spki_pin(cert: Path) -> str:
    """The base64 SHA-256 of a certificate's public key, as chromium's --ignore-certificate-errors-spki-list wants."""
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def headless(trust: Path | None = None, size: tuple[int, int] = (1400, 1000)) -> Any:
    """A headless chromium; `trust`: the server certificate it accepts (the master's)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(flag)
    if trust is not None:
        options.add_argument(f"--ignore-certificate-errors-spki-list={spki_pin(trust)}")
    service = Service(shutil.which("chromedriver") or CHROMEDRIVER)
    return webdriver.Chrome(service=service, options=options)


def login(driver: Any, base_url: str, token: str, path: str = "/") -> None:
    """Open `path`; the master sends an unauthenticated browser to its login page: log in there with `token`."""
    from selenium.webdriver.common.by import By

    driver.get(base_url + path)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login-submit").click()


PAINT_TIMING = """
const nav = performance.getEntriesByType("navigation")[0];
const paints = Object.fromEntries(performance.getEntriesByType("paint").map((p) => [p.name, p.startTime]));
return {
  first_paint_ms: paints["first-paint"] ?? null,
  first_contentful_paint_ms: paints["first-contentful-paint"] ?? null,
  response_end_ms: nav ? nav.responseEnd : null,
  dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
  load_ms: nav ? nav.loadEventEnd : null,
  transfer_bytes: nav ? nav.transferSize : null,
  rows: document.querySelectorAll("tbody tr[data-task]").length,
};
"""


def paint_timing(driver: Any) -> dict[str, Any]:
    """The open page's navigation and paint timings (milliseconds from the navigation's start)."""
    return dict(driver.execute_script(PAINT_TIMING))
