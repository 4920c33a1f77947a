import csv
import json
import shutil
import threading
import time
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import HardmineError
from hardmine.views.gallery import SECTIONS, gallery_cards, render_page, section_of, serve_run

runner = CliRunner()
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EVIL = '<script>window.pwned=1</script>"onerror="window.pwned=2'


@pytest.fixture(scope="module")
def mined_run(demo_dir, tmp_path_factory):
    """A 2-round run on demo data whose metadata carries hostile strings."""
    base = tmp_path_factory.mktemp("gallery")
    data = base / "data"
    shutil.copytree(demo_dir, data)
    meta = pd.read_csv(data / "HAM10000_metadata.csv")
    meta["localization"] = EVIL
    meta.loc[meta.index[::2], "lesion_id"] = meta.loc[meta.index[::2], "lesion_id"] + EVIL
    meta.to_csv(data / "HAM10000_metadata.csv", index=False)
    run = base / "run"
    args = ["round", "--data", str(data), "--out", str(run), "--n", "1", "--image-size", "24", "--epochs", "2",
            "--round-epochs", "1", "--strategy", "finetune", "--device", "cpu", "--k", "5"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def test_cards_match_mined_csv(mined_run):
    cards, facts = gallery_cards(mined_run, 1)
    mined = pd.read_csv(mined_run / "round-001" / "mined.csv", dtype={"id": str}, keep_default_na=False)
    expected = mined.apply(section_of, axis=1).value_counts().to_dict()
    got = pd.Series([c["section"] for c in cards if c["section"] != "persistent"]).value_counts().to_dict()
    assert got == expected
    seeds0 = set(pd.read_csv(mined_run / "round-000" / "mined.csv", dtype={"id": str}).query("role == 'seed'").id)
    seeds1 = set(mined.query("role == 'seed'").id)
    assert {c["id"] for c in cards if c["section"] == "persistent"} == seeds0 & seeds1
    card = next(c for c in cards if c["section"] == "neighbour")
    assert card["seed_of"] and card["sim"] is not None and len(card["history"]) == 2
    assert facts["positive"] == "mel"


def test_html_escapes_data_strings():
    card = {"id": "x", "section": "fn", "reasons": EVIL, "group": EVIL, "label": "mel", "label01": 1}
    page = render_page([card], {"round": 0, "threshold": 0.5, "positive": EVIL, "negative": "nv", "run": EVIL})
    assert "<script>window.pwned" not in page
    assert "&lt;script&gt;" in page  # escaped where it is HTML text

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.scripts, self.handlers = 0, []

        def handle_starttag(self, tag, attrs):
            self.scripts += tag == "script"
            self.handlers += [name for name, _ in attrs if name.startswith("on")]

    tags = Tags()
    tags.feed(page)
    assert tags.scripts == 2 and tags.handlers == []  # only the page's own data block and script


def test_cli_gallery_writes_page_thumbs_and_png(mined_run):
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--png"])
    assert result.exit_code == 0, result.output
    out = mined_run / "round-001" / "gallery"
    assert (out / "index.html").exists() and any((out / "thumbs").iterdir())
    assert (out / "hardest.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--inline"])
    assert result.exit_code == 0
    assert "data:image/jpeg;base64," in (out / "index.html").read_text()
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "7"])
    assert result.exit_code == 2 and "round-007" in result.output
    # without --round the gallery opens on the best round and says so
    best = json.loads((mined_run / "report.json").read_text())["best_round"]
    result = runner.invoke(app, ["gallery", str(mined_run)], terminal_width=300)
    assert result.exit_code == 0 and f"round-{best:03d}" in result.output
    assert "<b>best on validation</b>" in (mined_run / f"round-{best:03d}" / "gallery" / "index.html").read_text()


@contextmanager
def _served(run: Path):
    """The run's galleries on ``hardmine gallery --serve``'s server, in a thread."""
    server = serve_run(run)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_serve_gives_the_run_folder_on_loopback_only(mined_run, monkeypatch):
    import http.client

    assert runner.invoke(app, ["gallery", str(mined_run), "--round", "1"]).exit_code == 0
    with _served(mined_run) as base:
        port = int(base.rsplit(":", 1)[1])

        def get(path: str) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)  # sent as written: no client-side normalisation of ..
            response = conn.getresponse()
            return response.status, response.read()

        status, page = get("/round-001/gallery/index.html")
        assert status == 200 and page == (mined_run / "round-001" / "gallery" / "index.html").read_bytes()
        thumb = next((mined_run / "round-001" / "gallery" / "thumbs").iterdir())
        assert get(f"/round-001/gallery/thumbs/{thumb.name}") == (200, thumb.read_bytes())
        outside = mined_run.parent / "outside.txt"
        outside.write_text("not the run's")
        assert get("/../outside.txt")[0] == 404 and get("/round-001/../../outside.txt")[0] == 404
        assert get("/")[0] == 404  # no listing of the run folder
        with pytest.raises(HardmineError, match=f"cannot serve on 127.0.0.1:{port}"):
            serve_run(mined_run, port)  # taken
    with pytest.raises(HardmineError, match="--port 70000 is not valid"):
        serve_run(mined_run, 70000)
    # the command builds, serves until Ctrl-C and says where
    served = []

    def interrupted(server):
        served.append(server.server_address)
        raise KeyboardInterrupt

    opened = []
    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", interrupted)
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--serve", "--open"])
    assert result.exit_code == 0, result.output
    assert served and served[0][0] == "127.0.0.1"
    url = f"http://127.0.0.1:{served[0][1]}/round-001/gallery/index.html"
    assert url in result.output and opened == [url]
    # opened from disk, the command says how to keep the decisions
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--open"], terminal_width=300)
    assert result.exit_code == 0 and opened[1:] == [(mined_run / "round-001" / "gallery" / "index.html").as_uri()]
    assert "`--serve` keeps them" in result.output
    result = runner.invoke(app, ["gallery", str(mined_run), "--serve", "--port", "-1"])
    assert result.exit_code == 2 and "--port -1 is not valid" in result.output


def _driver(download_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000"):  # fmt: skip
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_gallery_in_headless_chromium(mined_run, tmp_path):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    assert runner.invoke(app, ["gallery", str(mined_run), "--round", "1"]).exit_code == 0
    page = mined_run / "round-001" / "gallery" / "index.html"
    mined = pd.read_csv(mined_run / "round-001" / "mined.csv", dtype={"id": str}, keep_default_na=False)
    expected = mined.apply(section_of, axis=1).value_counts().to_dict()
    driver = _driver(tmp_path)
    try:
        start = time.perf_counter()
        driver.get(page.as_uri())
        driver.find_element(By.CSS_SELECTOR, ".card")
        print(f"gallery of {len(mined)} cards usable after {time.perf_counter() - start:.2f}s")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        assert driver.execute_script("return window.pwned") is None  # planted markup stayed inert
        shown = driver.execute_script(
            "return Object.fromEntries([...document.querySelectorAll('section')]"
            ".map(s => [s.dataset.section, +s.dataset.shown]))"
        )
        for key, _ in SECTIONS:
            if key != "persistent":
                assert shown[key] == expected.get(key, 0), key
        # render everything by scrolling, then count the cards per section
        for _ in range(40):
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            if driver.execute_script(
                "return [...document.querySelectorAll('section')].every(s => +s.dataset.rendered === +s.dataset.shown)"
            ):
                break
            time.sleep(0.05)
        for key, count in expected.items():
            assert len(driver.find_elements(By.CSS_SELECTOR, f"#sec-{key} .card")) == count, key
        # every neighbour strip starts with its seed's own image
        strips = driver.find_elements(By.CSS_SELECTOR, "#sec-neighbour .strip")
        assert strips and all(s.find_elements(By.CSS_SELECTOR, ".seedref img") for s in strips)
        # HAM10000's dx_type is on the card
        assert "diagnosed by" in driver.find_element(By.CSS_SELECTOR, ".card dl").text
        # filtering by class changes what is shown, and the section counts follow
        Select(driver.find_element(By.ID, "cls")).select_by_value("1")
        shown_pos = driver.execute_script("return [...document.querySelectorAll('.card dd.pos')].length")
        cards = driver.execute_script("return document.querySelectorAll('.card').length")
        assert 0 < cards == shown_pos
        assert driver.execute_script("return document.querySelector('#sec-fp').dataset.shown") == "0"
        assert driver.execute_script("return document.querySelector('#sec-fp .count').dataset.count") == "0"
        # sorting changes the order
        Select(driver.find_element(By.ID, "cls")).select_by_value("all")
        first = driver.execute_script(
            "return document.querySelector('#sec-low-margin .card, #sec-fp .card').dataset.id"
        )
        Select(driver.find_element(By.ID, "order")).select_by_value("asc")
        again = driver.execute_script(
            "return document.querySelector('#sec-low-margin .card, #sec-fp .card').dataset.id"
        )
        assert first != again
        # without --round the gallery opens on the best round on validation, and says so
        best = json.loads((mined_run / "report.json").read_text())["best_round"]
        assert runner.invoke(app, ["gallery", str(mined_run)]).exit_code == 0
        driver.get((mined_run / f"round-{best:03d}" / "gallery" / "index.html").as_uri())
        shown_round = "return JSON.parse(document.getElementById('data').textContent).facts.round"
        assert driver.execute_script(shown_round) == best
        assert "best on validation" in driver.find_element(By.TAG_NAME, "header").text
        driver.get(page.as_uri())
        driver.find_element(By.CSS_SELECTOR, ".card")
        # a card enlarges, and closes again
        image = driver.find_element(By.CSS_SELECTOR, ".card img")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        image.click()
        assert driver.find_element(By.ID, "zoom").is_displayed()
        assert driver.execute_script("return document.getElementById('zoom-img').getBoundingClientRect().width") > 300
        driver.find_element(By.ID, "zoom").click()
        assert not driver.find_element(By.ID, "zoom").is_displayed()
        # decide on two cards; the decisions survive a reload and download in the relabel format.
        # Served as `gallery --serve` does: Chromium loses localStorage on some reloads of a file:// page
        # and none over http (benchmarks/bench_gallery_storage.py).
        with _served(mined_run) as base:
            driver.get(f"{base}/round-001/gallery/index.html")
            picks = driver.find_elements(By.CSS_SELECTOR, ".card select.decision")[:2]
            ids = [p.find_element(By.XPATH, "..").get_attribute("data-id") for p in picks]
            Select(picks[0]).select_by_value("relabel")
            Select(picks[1]).select_by_value("exclude")
            assert driver.find_element(By.ID, "nsel").text == "2"
            driver.refresh()
            driver.find_element(By.CSS_SELECTOR, ".card")
            assert driver.find_element(By.ID, "nsel").text == "2"
            decided = (
                "return Object.fromEntries([...document.querySelectorAll('.card select.decision')]"
                ".filter(s => s.value).map(s => [s.parentElement.dataset.id, s.value]))"
            )
            assert driver.execute_script(decided) == {ids[0]: "relabel", ids[1]: "exclude"}
            driver.find_element(By.ID, "download").click()
            # a decision taken in another tab (another round's gallery of the run) shows here, and nothing is lost
            first_tab = driver.current_window_handle
            driver.switch_to.new_window("tab")
            driver.get(f"{base}/round-{best:03d}/gallery/index.html")
            assert driver.find_element(By.ID, "nsel").text == "2"
            third = next(p for p in driver.find_elements(By.CSS_SELECTOR, ".card select.decision")
                         if p.find_element(By.XPATH, "..").get_attribute("data-id") not in ids)
            third_id = third.find_element(By.XPATH, "..").get_attribute("data-id")
            Select(third).select_by_value("keep")
            driver.close()
            driver.switch_to.window(first_tab)
            for _ in range(50):
                if driver.find_element(By.ID, "nsel").text == "3":
                    break
                time.sleep(0.1)
            assert driver.find_element(By.ID, "nsel").text == "3"
            shown = driver.execute_script(decided)
            assert {ids[0]: "relabel", ids[1]: "exclude"}.items() <= shown.items()
            assert shown.get(third_id, "keep") == "keep"
        target = tmp_path / "decisions.csv"
        for _ in range(50):
            if target.exists():
                break
            time.sleep(0.1)
        rows = list(csv.DictReader(target.open()))
        assert {r["image_id"]: r["decision"] for r in rows} == {ids[0]: "relabel", ids[1]: "exclude"}
        labels = dict(zip(mined["id"], mined["label"], strict=True))
        relabelled = next(r for r in rows if r["decision"] == "relabel")
        assert relabelled["new_label"] == ("nv" if labels[relabelled["image_id"]] == 1 else "mel")
        # the file feeds `hardmine relabel` as it is
        from hardmine.views.relabel import read_decisions

        assert len(read_decisions(target, pd.read_csv(mined_run / "samples.csv", dtype=str))) == 2
        driver.save_screenshot(str(tmp_path / "gallery.png"))
    finally:
        driver.quit()


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_gallery_of_10000_cards_opens_quickly(tmp_path):
    pytest.importorskip("selenium")
    from selenium.webdriver.common.by import By

    cards = [
        {"id": f"ISIC_{i:07d}", "section": SECTIONS[i % 5][0], "role": "seed", "reasons": "misclassified",
         "group": f"HAM_{i}", "label": "mel" if i % 10 == 0 else "nv", "label01": int(i % 10 == 0), "pred": "nv",
         "prob_pos": (i % 97) / 97, "loss": 1.0, "margin": -0.5, "hardness": (i % 89) / 89, "weight": 2.0,
         "seed_of": "ISIC_0000000" if i % 5 == 3 else "", "sim": 0.9 if i % 5 == 3 else None, "history": [0.1, 0.2],
         "src": ""}
        for i in range(10_000)
    ]  # fmt: skip
    page = tmp_path / "index.html"
    page.write_text(
        render_page(cards, {"round": 1, "threshold": 0.5, "positive": "mel", "negative": "nv", "run": "big"})
    )
    driver = _driver(tmp_path)
    try:
        start = time.perf_counter()
        driver.get(page.as_uri())
        driver.find_element(By.CSS_SELECTOR, ".card")
        seconds = time.perf_counter() - start
        print(f"10,000-card gallery usable after {seconds:.2f}s")
        assert seconds < 5.0
        total = driver.execute_script(
            "return [...document.querySelectorAll('section')].reduce((a, s) => a + +s.dataset.shown, 0)"
        )
        assert total == 10_000
        (tmp_path / "timing.json").write_text(json.dumps({"seconds": seconds}))
    finally:
        driver.quit()
