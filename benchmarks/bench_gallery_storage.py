"""Does the browser keep a gallery's review decisions across a reload, from disk and over http?

The gallery keeps decisions in ``localStorage``. This drives headless Chromium (Debian's
``chromium`` and ``chromium-driver``, selenium from the ``dev`` extra) on a page that shows
what it reads from the store: it sets a new value, waits 0, 0.1, 0.3 or 1 s, reloads, and
counts the reloads that came back without the value, for the page opened as ``file://``
and served on 127.0.0.1 (as ``hardmine gallery --serve`` does). Prints one line per origin.

    python benchmarks/bench_gallery_storage.py [--reloads 40]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = """<html><body><span id="n"></span><script>
document.getElementById("n").textContent = localStorage.getItem("k") || "none";
</script></body></html>"""
WAITS = (0.0, 0.1, 0.3, 1.0)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the standard library's signature
        pass


def lost_reloads(driver, url: str, reloads: int) -> int:
    """How many of ``reloads`` reloads of ``url`` did not show the value set just before."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    lost = 0
    for i in range(reloads):
        value = f"{time.time()}-{i}"
        driver.execute_script("localStorage.setItem('k', arguments[0])", value)
        time.sleep(WAITS[i % len(WAITS)])
        driver.refresh()
        lost += driver.find_element(By.ID, "n").text != value
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=40)
    args = parser.parse_args()
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        raise SystemExit("needs Debian's chromium and chromium-driver on PATH")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    options.binary_location = chromium
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "store.html"
        page.write_text(PAGE)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        try:
            served = f"http://127.0.0.1:{server.server_address[1]}/store.html"
            for origin, url in (("file://", page.as_uri()), ("http (127.0.0.1)", served)):
                lost = lost_reloads(driver, url, args.reloads)
                print(f"{origin}: {lost} of {args.reloads} reloads lost the value set before them "
                      f"(waits {', '.join(map(str, WAITS))} s in turn)", flush=True)  # fmt: skip
        finally:
            driver.quit()
            server.shutdown()


if __name__ == "__main__":
    main()
