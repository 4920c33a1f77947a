import shutil
from pathlib import Path

import numpy as np
import pytest

from hardmine.core.index import normalise
from hardmine.data.synth import generate_demo


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """hardmine's cache of verified images in a folder of the test session, not the user's home."""
    import os

    os.environ["HARDMINE_CACHE"] = str(tmp_path_factory.mktemp("hardmine-cache"))


@pytest.fixture
def no_network(monkeypatch, tmp_path) -> Path:
    """An empty torch cache, no $HARDMINE_WEIGHTS_DIR, and every download failing (as offline); returns tmp_path."""
    import urllib.error

    import torch

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("HARDMINE_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tmp_path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small HAM10000-layout demo set shared by the tests (read-only for them)."""
    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, n=400, positive_frac=0.15, size=32, seed=3)
    return out


@pytest.fixture
def demo_copy(demo_dir, tmp_path) -> Path:
    """A private copy of the demo set that a test may damage."""
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(demo_dir, dst)
    return dst


def _planted_world(n=1500, pos_frac=0.12, flip_frac=0.03, seed=0):
    """A model's-eye view of data with planted hard cases and label flips.

    Latent malignancy m drives both the true class and what a reasonable model
    outputs; hard cases sit near m = 0.5; flips are clear cases with the
    wrong label. Embeddings encode m (plus nuisance), as a trained network's would.
    """
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < pos_frac).astype(int)
    m = np.clip(rng.normal(np.where(truth == 1, 0.74, 0.26), 0.14), 0, 1)
    hard = np.abs(m - 0.5) < 0.1
    clear = np.flatnonzero(np.abs(m - 0.5) >= 0.22)
    flipped = np.zeros(n, bool)
    flipped[rng.choice(clear, int(flip_frac * n), replace=False)] = True
    labels = np.where(flipped, 1 - truth, truth)
    prob = 1 / (1 + np.exp(-12 * (m - 0.5) + rng.normal(0, 0.5, n)))
    emb = np.column_stack([np.cos(3 * m), np.sin(3 * m), 0.15 * rng.normal(size=(n, 6))])
    groups = np.arange(n) // 2  # two images per lesion
    return labels, prob, normalise(emb), groups, hard, flipped


@pytest.fixture
def planted_world():
    """``planted_world(n, pos_frac, flip_frac, seed) -> labels, prob, emb, groups, hard, flipped``: a model's-eye
    view of data with planted hard cases and label flips (numpy, no images)."""
    return _planted_world


def headless_chromium(download_dir: Path):
    """A headless Debian Chromium whose downloads land in ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for a test module's browser tests; downloads land in ``browser.download_dir``."""
    pytest.importorskip("selenium")
    download_dir = tmp_path_factory.mktemp("downloads")
    driver = headless_chromium(download_dir)
    driver.download_dir = download_dir
    yield driver
    driver.quit()


def download_csv(browser, name: str) -> list[dict[str, str]]:
    """Click the page's download button and read back the CSV ``name`` it saves, row by row."""
    import csv
    import time

    from selenium.webdriver.common.by import By

    target = browser.download_dir / name
    target.unlink(missing_ok=True)
    browser.find_element(By.ID, "download").click()
    for _ in range(50):
        if target.exists():
            break
        time.sleep(0.1)
    with target.open() as handle:
        return list(csv.DictReader(handle))

