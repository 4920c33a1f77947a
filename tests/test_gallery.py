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
from conftest import download_csv, headless_chromium
from typer.testing import CliRunner

from hardmine.cli import app
from hardmine.core.errors import HardmineError
from hardmine.views.gallery import SECTIONS, gallery_cards, render_page
from hardmine.views.serving import run_port, serve_run

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
    args = ["round", "--data", str(data), "--model", "tiny",
            "--out", str(run), "--n", "1", "--image-size", "24", "--epochs", "2",
            "--round-epochs", "1", "--strategy", "finetune", "--device", "cpu", "--k", "5"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def test_cards_match_mined_csv(mined_run):
    cards, facts = gallery_cards(mined_run, 1)
    mined = pd.read_csv(mined_run / "round-001" / "mined.csv", dtype={"id": str}, keep_default_na=False)
    got = pd.Series([c["section"] for c in cards if c["section"] != "persistent"]).value_counts().to_dict()
    assert got == {key: n for key, n in _expected_sections(mined_run).items() if n}
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
    # without --round the gallery opens on the mining that made the returned model and says so
    opened, story = _made_returned(mined_run)
    result = runner.invoke(app, ["gallery", str(mined_run)], terminal_width=300)
    assert result.exit_code == 0 and f"round-{opened:03d}" in result.output
    assert story in (mined_run / f"round-{opened:03d}" / "gallery" / "index.html").read_text()
    assert (mined_run / "round-000" / "gallery" / "index.html").exists()  # round 0's is built by the run too


def _made_returned(run: Path) -> tuple[int, str]:
    """The round whose mining made the returned model, and the words the page says it with."""
    report = json.loads((run / "report.json").read_text())
    if report["returned"] == "reference":
        return 0, "the run hands back its equal-epochs reference"
    if report["best_round"] == 0:
        return 0, "the run hands back round 0, trained before any mining"
    return report["best_round"] - 1, f"this mining made round {report['best_round']}, the model the run hands back"


@contextmanager
def served(run: Path):
    """The run's galleries on ``hardmine gallery --serve``'s server, in a thread; the decisions it keeps in the run
    folder are removed before and after, so no test sees another's."""
    (run / "decisions.json").unlink(missing_ok=True)
    server = serve_run(run)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        (run / "decisions.json").unlink(missing_ok=True)


def _getter(base: str):
    """``get(path, host=None, header=None) -> (status, body or that header)`` from the server at ``base``."""
    import http.client

    port = int(base.rsplit(":", 1)[1])

    def get(path: str, host: str | None = None, header: str | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", path, headers={"Host": host} if host else {})  # sent as written: no normalising
        response = conn.getresponse()
        return response.status, response.getheader(header) if header else response.read()

    return get


def test_serve_gives_the_run_folder_on_loopback_only(mined_run, monkeypatch):
    assert runner.invoke(app, ["gallery", str(mined_run), "--round", "1"]).exit_code == 0
    with served(mined_run) as base:
        port = int(base.rsplit(":", 1)[1])
        assert port == run_port(mined_run)  # the run's own port: served again, the browser finds its decisions
        get = _getter(base)
        status, page = get("/round-001/gallery/index.html")
        assert status == 200 and page == (mined_run / "round-001" / "gallery" / "index.html").read_bytes()
        thumb = next((mined_run / "round-001" / "gallery" / "thumbs").iterdir())
        assert get(f"/round-001/gallery/thumbs/{thumb.name}") == (200, thumb.read_bytes())
        outside = mined_run.parent / "outside.txt"
        outside.write_text("not the run's")
        assert get("/../outside.txt")[0] == 404 and get("/round-001/../../outside.txt")[0] == 404
        # the run's address opens the gallery of the mining that made the returned model; no listings
        opened, _ = _made_returned(mined_run)
        assert get("/", header="Location") == (302, f"/round-{opened:03d}/gallery/index.html")
        assert get("/round-001/")[0] == 404
        with pytest.raises(HardmineError, match=f"cannot serve on 127.0.0.1:{port}"):
            serve_run(mined_run, port)  # taken
    with pytest.raises(HardmineError, match="--port 70000 is not valid"):
        serve_run(mined_run, 70000)
    # the command builds, serves until Ctrl-C and says where
    addresses = []

    def interrupted(server):
        addresses.append(server.server_address)
        raise KeyboardInterrupt

    opened = []
    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", interrupted)
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--serve", "--open"])
    assert result.exit_code == 0, result.output
    assert addresses and addresses[0][0] == "127.0.0.1"
    url = f"http://127.0.0.1:{addresses[0][1]}/round-001/gallery/index.html"
    assert url in result.output and opened == [url]
    # opened from disk, the command says how to keep the decisions
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--open"], terminal_width=300)
    assert result.exit_code == 0 and opened[1:] == [(mined_run / "round-001" / "gallery" / "index.html").as_uri()]
    assert "`--serve` keeps them" in result.output
    result = runner.invoke(app, ["gallery", str(mined_run), "--serve", "--port", "-1"])
    assert result.exit_code == 2 and "--port -1 is not valid" in result.output


def browser_test(fn):
    """Marks a test that drives headless Chromium (skipped without Debian's chromium and chromium-driver)."""
    skip = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
    return pytest.mark.browser(skip(fn))


SHOWN = ("return Object.fromEntries([...document.querySelectorAll('section')]"
         ".map(s => [s.dataset.section, +s.dataset.shown]))")  # fmt: skip
DECIDED = ("return Object.fromEntries([...document.querySelectorAll('.card select.decision')]"
           ".filter(s => s.value).map(s => [s.parentElement.dataset.id, s.value]))")  # fmt: skip


@pytest.fixture
def round1_page(mined_run, browser):
    """Round 1's gallery opened from disk, its cards in the page."""
    from selenium.webdriver.common.by import By

    assert runner.invoke(app, ["gallery", str(mined_run), "--round", "1"]).exit_code == 0
    browser.get((mined_run / "round-001" / "gallery" / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, ".card")
    return browser


def _expected_sections(mined_run: Path) -> dict[str, int]:
    """Cards per section, from mined.csv's roles, reasons and labels (written out here, not the gallery's rule)."""
    mined = pd.read_csv(mined_run / "round-001" / "mined.csv", dtype={"id": str}, keep_default_na=False)
    misclassified = mined["reasons"].str.split("|").apply(lambda reasons: "misclassified" in reasons)
    seed = mined["role"] == "seed"
    return {"fn": int((seed & misclassified & (mined["label"] == 1)).sum()),
            "fp": int((seed & misclassified & (mined["label"] == 0)).sum()),
            "low-margin": int((seed & ~misclassified).sum()),
            "neighbour": int((mined["role"] == "neighbour").sum()),
            "quarantined": int((mined["role"] == "quarantined").sum())}  # fmt: skip


def _render_all(driver) -> None:
    for _ in range(40):  # cards render as they scroll into view
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        if driver.execute_script(
            "return [...document.querySelectorAll('section')].every(s => +s.dataset.rendered === +s.dataset.shown)"
        ):
            return
        time.sleep(0.05)


def test_attack_serve_follows_no_symlink_out_of_the_run_and_answers_loopback_names_only(mined_run, tmp_path):
    """Attack (item 6): ``gallery --serve`` of a run folder holding ``etc-link -> /etc`` answered
    ``GET /etc-link/passwd`` with 200, and a thumbnail symlinked to an outside file served that file; and a
    web page whose host name an attacker rebinds to 127.0.0.1 (DNS rebinding) could read the run."""
    assert runner.invoke(app, ["gallery", str(mined_run), "--round", "1"]).exit_code == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    thumbs = mined_run / "round-001" / "gallery" / "thumbs"
    links = [(mined_run / "etc-link", tmp_path), (thumbs / "leak.png", secret)]
    for link, target in links:
        link.symlink_to(target)
    try:
        with served(mined_run) as base:
            get = _getter(base)
            port = base.rsplit(":", 1)[1]
            assert get("/etc-link/secret.txt")[0] == 404  # a folder symlinked out of the run
            assert get("/round-001/gallery/thumbs/leak.png")[0] == 404  # a file symlinked out of it
            for host in ("attacker.example", "attacker.example:80", "127.0.0.1.attacker.example"):
                assert get("/round-001/gallery/index.html", host)[0] == 403
            for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
                assert get("/round-001/gallery/index.html", host)[0] == 200
    finally:
        for link, _ in links:
            link.unlink()


@browser_test
def test_browser_page_loads_without_errors_and_data_stays_inert(round1_page):
    errors = [e for e in round1_page.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert round1_page.execute_script("return window.pwned") is None  # planted markup stayed inert


@browser_test
def test_browser_sections_hold_the_mined_rows(round1_page, mined_run):
    from selenium.webdriver.common.by import By

    expected = _expected_sections(mined_run)
    assert sum(expected.values()) > 0
    shown = round1_page.execute_script(SHOWN)
    assert {key: shown[key] for key in expected} == expected
    _render_all(round1_page)
    for key, count in expected.items():
        assert len(round1_page.find_elements(By.CSS_SELECTOR, f"#sec-{key} .card")) == count, key


@browser_test
def test_browser_cards_show_seed_strips_and_metadata(round1_page):
    from selenium.webdriver.common.by import By

    _render_all(round1_page)
    strips = round1_page.find_elements(By.CSS_SELECTOR, "#sec-neighbour .strip")
    assert strips and all(s.find_elements(By.CSS_SELECTOR, ".seedref img") for s in strips)  # the seed comes first
    # a card leads with its image and one line; the rest is one click away
    first = round1_page.find_element(By.CSS_SELECTOR, ".card")
    assert first.find_element(By.CSS_SELECTOR, "img").size["width"] >= 180
    assert " \u2192 " in first.find_element(By.CSS_SELECTOR, ".line").text and first.find_element(By.CSS_SELECTOR,
                                                                                                 ".why").text
    assert first.find_element(By.CSS_SELECTOR, "dl").text == ""  # folded
    round1_page.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)  # below the sticky header
    first.find_element(By.CSS_SELECTOR, "summary").click()
    assert "diagnosed by" in first.find_element(By.CSS_SELECTOR, "dl").text  # HAM10000's dx_type
    # a quarantine card shows the nearest other lesions it was doubted by, as images with their labels
    quarantined = round1_page.find_elements(By.CSS_SELECTOR, "#sec-quarantined .card")
    assert quarantined, "the demo run quarantines some images"
    for card in quarantined[:5]:
        shown = card.find_elements(By.CSS_SELECTOR, ".evidence figure")
        assert len(shown) == 4 and all(f.find_element(By.TAG_NAME, "figcaption").text in ("mel", "nv") for f in shown)
        assert "doubted" in card.find_element(By.CSS_SELECTOR, ".why").text


@browser_test
def test_browser_filter_by_class_and_sort(round1_page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    # by default the quarantine is a review queue, most suspect first; the other sections by hardness
    order = round1_page.execute_script("""return [...document.querySelectorAll('#sec-quarantined .card')]
        .map(c => DATA.cards.find(x => x.id === c.dataset.id).suspicion)""")
    assert len(order) > 2 and order == sorted(order, reverse=True)
    hardness = round1_page.execute_script("""return [...document.querySelectorAll('#sec-fp .card')]
        .map(c => DATA.cards.find(x => x.id === c.dataset.id).hardness)""")
    assert hardness == sorted(hardness, reverse=True)
    tips = round1_page.execute_script(
        "return [...document.querySelectorAll('.card dt[title]')].map(d => d.textContent)")
    assert {"loss", "margin (true)", "hardness", "weight"} <= set(tips)  # the jargon explained on hover
    Select(round1_page.find_element(By.ID, "cls")).select_by_value("1")
    shown_pos = round1_page.execute_script("return [...document.querySelectorAll('.card dd.pos')].length")
    cards = round1_page.execute_script("return document.querySelectorAll('.card').length")
    assert 0 < cards == shown_pos  # only positives, and the section counts follow
    assert round1_page.execute_script("return document.querySelector('#sec-fp').dataset.shown") == "0"
    assert round1_page.execute_script("return document.querySelector('#sec-fp .count').dataset.count") == "0"
    Select(round1_page.find_element(By.ID, "cls")).select_by_value("all")
    first_card = "return document.querySelector('#sec-low-margin .card, #sec-fp .card').dataset.id"
    first = round1_page.execute_script(first_card)
    Select(round1_page.find_element(By.ID, "order")).select_by_value("asc")
    assert round1_page.execute_script(first_card) != first


@browser_test
def test_browser_zoom_opens_and_closes(round1_page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    round1_page.execute_script("localStorage.clear()")
    round1_page.refresh()
    image = round1_page.find_element(By.CSS_SELECTOR, ".card img")
    first = image.find_element(By.XPATH, "..").get_attribute("data-id")
    round1_page.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
    image.click()
    assert round1_page.find_element(By.ID, "zoom").is_displayed()
    assert round1_page.execute_script("return document.getElementById('zoom-img').getBoundingClientRect().width") > 300
    # from file:// the zoom shows the original file, not the thumbnail
    src = round1_page.execute_script("return document.getElementById('zoom-img').src")
    assert src.startswith("file://") and "/thumbs/" not in src
    keys = ActionChains(round1_page)
    keys.send_keys("r").perform()  # a decision from the zoom, by key: the lesion's, as on its card
    decided = round1_page.execute_script(DECIDED)
    group = "return DATA.cards.find(c => c.id === arguments[0]).group"
    assert decided[first] == "relabel" and set(decided.values()) == {"relabel"}
    assert {round1_page.execute_script(group, i) for i in decided} == {round1_page.execute_script(group, first)}
    assert first in round1_page.find_element(By.ID, "zoom-caption").text
    keys.send_keys(Keys.ARROW_RIGHT).perform()  # the next card
    assert first not in round1_page.find_element(By.ID, "zoom-caption").text
    keys.send_keys(Keys.ESCAPE).perform()
    assert not round1_page.find_element(By.ID, "zoom").is_displayed()


@browser_test
def test_browser_gallery_opens_on_the_mining_that_made_the_returned_model(mined_run, browser):
    from selenium.webdriver.common.by import By

    opened, story = _made_returned(mined_run)
    assert runner.invoke(app, ["gallery", str(mined_run)]).exit_code == 0
    browser.get((mined_run / f"round-{opened:03d}" / "gallery" / "index.html").as_uri())
    shown_round = "return JSON.parse(document.getElementById('data').textContent).facts.round"
    assert browser.execute_script(shown_round) == opened
    assert story in browser.find_element(By.TAG_NAME, "header").text


# the decision selects of cards whose lesion has no other card, read in one pass over the page (cards are drawn as
# they come into view: two separate queries could see two different pages)
LESION_ALONE = ("const n = {}; for (const c of DATA.cards) n[c.group] = (n[c.group] || 0) + 1;"
                "return [...document.querySelectorAll('.card select.decision')]"
                ".filter(s => n[DATA.cards.find(c => c.id === s.parentElement.dataset.id).group] === 1)")  # fmt: skip


@browser_test
def test_browser_a_relabel_decides_the_whole_lesion_on_the_page(round1_page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    round1_page.execute_script("localStorage.clear()")
    round1_page.refresh()
    _render_all(round1_page)
    shared = round1_page.execute_script(
        "const n = {}; for (const c of DATA.cards) if (c.section !== 'persistent')"
        " (n[c.group] = n[c.group] || new Set()).add(c.id);"
        "const g = Object.keys(n).find(k => k && n[k].size > 1); return g ? [...n[g]] : null")  # fmt: skip
    assert shared, "the demo run mines two images of one lesion"
    pick = next(p for p in round1_page.find_elements(By.CSS_SELECTOR, ".card select.decision")
                if p.find_element(By.XPATH, "..").get_attribute("data-id") == shared[0])  # fmt: skip
    round1_page.execute_script("arguments[0].scrollIntoView({block: 'center'})", pick)
    Select(pick).select_by_value("relabel")
    decided = round1_page.execute_script(DECIDED)
    assert all(decided.get(i) == "relabel" for i in shared), decided
    assert "images)" in Select(pick).first_selected_option.text  # the choice says it is the lesion's
    Select(pick).select_by_value("")
    assert not set(round1_page.execute_script(DECIDED)) & set(shared)


def _open_fresh(driver, base: str, page: str) -> None:
    """Open ``page`` of the served run with no decision anywhere: the browser's storage of the origin cleared
    (from a page that runs no script) and the run folder's emptied through the server."""
    import urllib.request

    driver.get(f"{base}/decisions")
    driver.execute_script("localStorage.clear()")
    urllib.request.urlopen(urllib.request.Request(f"{base}/decisions", data=b"{}", method="POST",
                                                  headers={"Content-Type": "application/json"}))  # fmt: skip
    driver.get(f"{base}/{page}")


def _decide(driver, base: str, choices: dict[int, str]) -> list[str]:
    """On the served round-1 page with a cleared store, set card ``i``'s decision to ``choices[i]``; their ids."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open_fresh(driver, base, "round-001/gallery/index.html")
    # cards whose lesion has no other card on the page: a keep or relabel decides the whole lesion
    picks = driver.execute_script(LESION_ALONE)
    for i, value in choices.items():
        Select(picks[i]).select_by_value(value)
    return [picks[i].find_element(By.XPATH, "..").get_attribute("data-id") for i in choices]


@browser_test
def test_browser_decisions_survive_a_reload_and_download_for_relabel(mined_run, browser):
    # served as `gallery --serve` does: Chromium loses localStorage on some reloads of a file:// page and none
    # over http (benchmarks/bench_gallery_storage.py)
    from selenium.webdriver.common.by import By

    from hardmine.views.relabel import read_decisions

    with served(mined_run) as base:
        ids = _decide(browser, base, {0: "relabel", 1: "exclude"})
        assert browser.find_element(By.ID, "nsel").text == "2"
        browser.refresh()
        browser.find_element(By.CSS_SELECTOR, ".card")
        assert browser.find_element(By.ID, "nsel").text == "2"
        assert browser.execute_script(DECIDED) == {ids[0]: "relabel", ids[1]: "exclude"}
        rows = download_csv(browser, "decisions.csv")
    target = browser.download_dir / "decisions.csv"
    assert {r["image_id"]: r["decision"] for r in rows} == {ids[0]: "relabel", ids[1]: "exclude"}
    mined = pd.read_csv(mined_run / "round-001" / "mined.csv", dtype={"id": str}, keep_default_na=False)
    labels = dict(zip(mined["id"], mined["label"], strict=True))
    relabelled = next(r for r in rows if r["decision"] == "relabel")
    assert relabelled["new_label"] == ("nv" if labels[relabelled["image_id"]] == 1 else "mel")
    assert len(read_decisions(target, pd.read_csv(mined_run / "samples.csv", dtype=str))) == 2  # relabel reads it
    # the loop closes: relabel (the whole lesion), then a round on the same split, before against after
    data = mined_run.parent / "data"
    relabelled = runner.invoke(app, ["relabel", str(mined_run), str(target), "--out", str(data / "reviewed.csv")])
    assert relabelled.exit_code == 0, relabelled.output
    after = browser.download_dir / "after"
    result = runner.invoke(app, ["round", "--data", str(data / "reviewed.csv"), "--model", "tiny",
                                 "--positive", "mel", "--negative", "nv",
                                 "--split-from", str(mined_run), "--trusted", "reviewed=yes", "--out", str(after),
                                 "--n", "0", "--epochs", "1", "--image-size", "24", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    split = pd.read_csv(mined_run / "split.csv", dtype=str).set_index("id")["split"]
    new_split = pd.read_csv(after / "split.csv", dtype=str).set_index("id")["split"]
    assert new_split.to_dict() == split.drop(ids[1]).to_dict()  # the excluded image gone, nothing moved
    before = json.loads((after / "report.json").read_text())["before"]
    assert before["images"] == int((new_split == "test").sum()) and "sens_at_spec90" in before


def _wait_for(browser, script: str, expected, tries: int = 50):
    import time

    for _ in range(tries):
        if (found := browser.execute_script(script)) == expected:
            return found
        time.sleep(0.1)
    return browser.execute_script(script)


@browser_test
def test_browser_decisions_move_from_disk_to_the_server_by_import_and_stay_in_the_run_folder(mined_run, browser):
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((mined_run / "round-001" / "gallery" / "index.html").as_uri())  # from disk: this browser only
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    assert "in this browser only" in browser.find_element(By.ID, "kept").text
    pick = browser.execute_script(LESION_ALONE)[0]
    Select(pick).select_by_value("exclude")
    decided = browser.execute_script(DECIDED)
    assert list(decided.values()) == ["exclude"]
    download_csv(browser, "decisions.csv")
    with served(mined_run) as base:
        _open_fresh(browser, base, "round-001/gallery/index.html")  # another origin: another browser storage
        assert "in the run folder" in browser.find_element(By.ID, "kept").text
        assert browser.execute_script(DECIDED) == {}
        browser.find_element(By.ID, "import").send_keys(str(browser.download_dir / "decisions.csv"))
        assert _wait_for(browser, DECIDED, decided) == decided
        stored = mined_run / "decisions.json"  # exists already ({} from _open_fresh): wait for the page's POST

        def kept() -> dict:
            return {i: d["decision"] for i, d in json.loads(stored.read_text()).items()} if stored.exists() else {}

        for _ in range(100):
            if kept() == decided:
                break
            time.sleep(0.1)
        assert kept() == decided
        browser.execute_script("localStorage.clear()")  # a fresh browser, or another machine's
        browser.refresh()
        browser.find_element(By.CSS_SELECTOR, ".card")
        assert _wait_for(browser, DECIDED, decided) == decided  # from the run folder


def test_the_server_keeps_decisions_only_from_its_own_pages(mined_run):
    import urllib.request

    image_id = pd.read_csv(mined_run / "samples.csv", dtype=str)["id"].iloc[0]
    with served(mined_run) as base:
        def post(body: bytes, **headers) -> int:
            request = urllib.request.Request(f"{base}/decisions", data=body, method="POST",
                                             headers={"Content-Type": "application/json"} | headers)  # fmt: skip
            try:
                return urllib.request.urlopen(request).status
            except urllib.error.HTTPError as exc:
                return exc.code

        good = json.dumps({image_id: {"decision": "keep", "current": "nv", "new_label": ""}}).encode()
        assert post(good, Origin="http://evil.example") == 403  # another site's page
        assert post(good, **{"Content-Type": "text/plain"}) == 404  # a request another site could send unasked
        assert post(json.dumps({"../../etc": {"decision": "keep"}}).encode()) == 400  # not an image of the run
        assert post(json.dumps({image_id: {"decision": "delete"}}).encode()) == 400
        assert not (mined_run / "decisions.json").exists()
        assert post(good) == 204
        assert json.loads(urllib.request.urlopen(f"{base}/decisions").read()) == json.loads(good)


HOSTILE_PREFIXES = ("-", "=", "+", "@")  # what a spreadsheet would run as a formula


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> tuple[Path, Path]:
    """A mined round 0 on images whose ids start with - = + @ and whose labels are -1 and 1."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    (data / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(100):
        positive = i % 5 == 0
        pixels = rng.normal(140 if positive else 110, 40, (24, 24, 3))  # overlapping: a tiny model mines many
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(data / "img" / f"{i}.png")
        rows.append((f"img/{i}.png", "1" if positive else "-1", f"{HOSTILE_PREFIXES[i % 4]}scan{i}"))
    pd.DataFrame(rows, columns=["path", "label", "id"]).to_csv(data / "manifest.csv", index=False)
    run = root / "run"
    args = ["round", "--data", str(data), "--model", "tiny",
            "--out", str(run), "--n", "0", "--epochs", "1", "--image-size", "24",
            "--device", "cpu", "--workers", "0"]  # fmt: skip
    assert runner.invoke(app, args).exit_code == 0
    return run, data


@browser_test
def test_browser_download_of_formula_like_ids_and_labels_reads_back_in_relabel(hostile_run, browser):
    # the page guards values starting with - = + @ with a quote; relabel must read them back as written
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run, data = hostile_run
    choices = {"-": "relabel", "=": "exclude", "+": "relabel", "@": "keep"}
    with served(run) as base:
        _open_fresh(browser, base, "round-000/gallery/index.html")
        _render_all(browser)
        picks = {}
        for pick in browser.find_elements(By.CSS_SELECTOR, ".card select.decision"):
            picks.setdefault(pick.find_element(By.XPATH, "..").get_attribute("data-id")[0], pick)
        assert set(picks) == set(HOSTILE_PREFIXES)
        chosen = {picks[prefix].find_element(By.XPATH, "..").get_attribute("data-id"): decision
                  for prefix, decision in choices.items()}  # fmt: skip
        for prefix, decision in choices.items():
            browser.execute_script("arguments[0].scrollIntoView()", picks[prefix])
            Select(picks[prefix]).select_by_value(decision)
        rows = download_csv(browser, "decisions.csv")
    assert {r["image_id"] for r in rows} == {f"'{i}" for i in chosen}  # guarded in the file
    assert {r["current_label"] for r in rows} <= {"1", "'-1"}
    result = runner.invoke(app, ["relabel", str(run), str(browser.download_dir / "decisions.csv")])
    assert result.exit_code == 0, result.output
    before = pd.read_csv(run / "samples.csv", dtype=str, keep_default_na=False).set_index("id")["class_name"]
    after = pd.read_csv(data / "relabelled-run.csv", dtype=str, keep_default_na=False).set_index("id")["label"]
    other = {"1": "-1", "-1": "1"}
    for image_id, decision in chosen.items():
        if decision == "exclude":
            assert image_id not in after.index
        else:
            assert after[image_id] == (other[before[image_id]] if decision == "relabel" else before[image_id])
    untouched = after.index.difference(list(chosen))
    assert len(after) == len(before) - 1 and (after[untouched] == before[untouched]).all()


@browser_test
def test_browser_a_decision_in_another_tab_shows_and_loses_nothing(mined_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    best = json.loads((mined_run / "report.json").read_text())["best_round"]
    with served(mined_run) as base:
        ids = _decide(browser, base, {0: "relabel", 1: "exclude"})
        first_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")  # another round's gallery of the same run
        browser.get(f"{base}/round-{best:03d}/gallery/index.html")
        assert browser.find_element(By.ID, "nsel").text == "2"
        third = next(p for p in browser.find_elements(By.CSS_SELECTOR, ".card select.decision")
                     if p.find_element(By.XPATH, "..").get_attribute("data-id") not in ids)  # fmt: skip
        third_id = third.find_element(By.XPATH, "..").get_attribute("data-id")
        Select(third).select_by_value("exclude")  # one image's decision (keep or relabel decide its lesion)
        browser.close()
        browser.switch_to.window(first_tab)
        for _ in range(50):
            if browser.find_element(By.ID, "nsel").text == "3":
                break
            time.sleep(0.1)
        assert browser.find_element(By.ID, "nsel").text == "3"
        shown = browser.execute_script(DECIDED)
        assert {ids[0]: "relabel", ids[1]: "exclude"}.items() <= shown.items()
        assert shown.get(third_id, "exclude") == "exclude"


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_gallery_of_10000_cards_builds_cards_as_they_come_into_view(tmp_path):
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
    driver = headless_chromium(tmp_path)
    try:
        driver.get(page.as_uri())
        driver.find_element(By.CSS_SELECTOR, ".card")
        total = driver.execute_script(
            "return [...document.querySelectorAll('section')].reduce((a, s) => a + +s.dataset.shown, 0)"
        )
        assert total == 10_000  # every card is counted and reachable...
        in_page = driver.execute_script("return document.querySelectorAll('.card').length")
        assert 0 < in_page <= 1_000  # ...but the page builds only what is in view: it opens at any size
        count = "return document.querySelectorAll('.card').length"
        for _ in range(100):  # scrolling builds more
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            if driver.execute_script(count) > in_page:
                break
            time.sleep(0.1)
        assert driver.execute_script(count) > in_page
    finally:
        driver.quit()


def test_decisions_are_keyed_by_the_runs_identity_not_its_folder_name(mined_run, tmp_path):
    # a copy in another folder of the same name is another run only if made as one: the key is config.json's run_id
    config = json.loads((mined_run / "config.json").read_text())
    cards, facts = gallery_cards(mined_run, 1)
    assert facts["store"] == f"hardmine-decisions:{config['run_id']}" and len(config["run_id"]) == 32
    from hardmine.record.config import RunConfig
    from hardmine.run.opened import Run

    other = Run.create(tmp_path / "run", RunConfig.from_dict(config))  # same folder name, another run
    assert other.identity() != config["run_id"] and other.root.name == mined_run.name


def test_serve_a_read_only_run_serves_the_page_built_before(mined_run, monkeypatch):
    # as root a read-only folder is still writable, so the refusal is simulated where the page is written
    assert runner.invoke(app, ["gallery", str(mined_run), "--round", "1"]).exit_code == 0

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(mined_run / "round-001" / "gallery" / "index.html"))

    monkeypatch.setattr("hardmine.views.gallery.build_gallery", refused)
    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", lambda server: (_ for _ in ()).throw(KeyboardInterrupt))
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1", "--serve"])
    assert result.exit_code == 0 and "is read-only: serving the page built before" in result.stderr
    result = runner.invoke(app, ["gallery", str(mined_run), "--round", "1"])
    assert result.exit_code == 2 and "cannot write the page into" in result.stderr


def test_attack_serve_never_sends_a_file_outside_the_recorded_data(mined_run, tmp_path):
    from hardmine.record.manifest import Manifest

    run = tmp_path / "run"
    shutil.copytree(mined_run, run)
    samples = pd.read_csv(run / "samples.csv", dtype=str, keep_default_na=False)
    secret = tmp_path / "secret.txt"
    secret.write_text("not an image of the run")
    with served(run) as base:
        get = _getter(base)
        assert get(f"/original/{samples['id'].iloc[1]}")[0] == 200  # a sample of the run, from its data
        samples.loc[0, "path"] = str(secret)
        samples.to_csv(run / "samples.csv", index=False)
        assert get(f"/original/{samples['id'].iloc[0]}")[0] == 500  # the table no longer matches its record
        Manifest(run).rerecord_run_files()  # an edit recorded too: the path is still outside the data root
        status, body = get(f"/original/{samples['id'].iloc[0]}")
        assert status == 404 and b"not an image of the run" not in body


def test_serve_answers_a_nul_byte_and_a_garbled_sample_table_in_one_line(mined_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mined_run, run)
    with served(run) as base:
        get = _getter(base)
        assert get("/round-001/%00index.html")[0] == 400
        (run / "samples.csv").write_bytes(b"\xff\xfe garbage,\n\x00")
        status, body = get("/original/anything")
        assert status == 500 and b"Traceback" not in body
        assert get("/round-001/gallery/index.html")[0] == 200  # the server still answers


def test_a_damaged_report_is_said_not_taken_for_no_report(mined_run, tmp_path):
    from hardmine.record.record import RunFolder
    from hardmine.views.gallery import mining_story

    copy = tmp_path / "run"
    shutil.copytree(mined_run, copy)
    (copy / "report.json").write_text("[]")  # not a report any more
    with pytest.warns(UserWarning, match="report.json is damaged .*the gallery opens on the latest mined round"):
        _, story = mining_story(RunFolder(copy))
    assert story.startswith("the report cannot be read (") and "no report yet" not in story
    (copy / "report.json").unlink()
    assert mining_story(RunFolder(copy))[1] == "no report yet: the latest mined round"


def test_a_toy_page_is_one_module_one_template_and_one_registry_line(mined_run, tmp_path, monkeypatch):
    import toy_page

    from hardmine.views.pages import PAGES, Page

    run = tmp_path / "run"
    shutil.copytree(mined_run, run)
    monkeypatch.setitem(PAGES, "toy", Page("toy page", toy_page.build, toy_page.where))  # the registry line
    result = runner.invoke(app, ["gallery", str(run), "--page", "toy", "--round", "1"], terminal_width=250)
    assert result.exit_code == 0, result.output
    page = run / "toy" / "index.html"
    assert f"toy page: {page}" in " ".join(result.output.split())
    html = page.read_text()
    seeds = pd.read_csv(run / "round-001" / "mined.csv", dtype=str).query("role == 'seed'")["id"]
    assert len(seeds) and all(f"<li>{i} (" in html for i in seeds)
    assert "<script>" not in html and "&lt;script&gt;" in html  # the hostile lesion ids rendered as text
    # the family's other pages through the same table; an unknown name is one line
    result = runner.invoke(app, ["gallery", str(run), "--page", "report"], terminal_width=250)
    assert result.exit_code == 0 and f"report: {run / 'report.html'}" in " ".join(result.output.split())
    result = runner.invoke(app, ["gallery", str(run), "--page", "nope"])
    assert result.exit_code == 2 and "--page 'nope' is not valid; expected one of gallery, label, report, toy" \
        in result.output and "Traceback" not in result.output
