"""Static HTML galleries (and PNG contact sheets) of what a round mined and why.

``build_gallery(run_dir, r)`` writes ``RUN/round-RRR/gallery/index.html``: one
page, no server, no network, usable from ``file://``. Thumbnails are written
beside it (``thumbs/``) or inlined as data URIs. Card data travels as a JSON
block that the page's own script renders with ``textContent`` (never
``innerHTML``), so every string from data is inert; the few strings placed in
HTML directly are escaped.

:mod:`hardmine.views.serving` serves the same pages over http (``hardmine gallery --serve``); as a page of
the family (:mod:`hardmine.views.pages`) the gallery is :func:`build` and :func:`where`.

Sections mirror ``mined.csv``: missed positives and false alarms (seeds
misclassified at the round's threshold), low-margin seeds, neighbour
expansions (one strip per seed), quarantined suspected label errors, plus the
persistently hard (a seed in every round so far). No torch here.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hardmine.core.errors import HardmineError, warn
from hardmine.core.io import write_bytes
from hardmine.record.layout import HARDEST_PNG, METRICS_FILE, MINED_FILE, REPORT_FILE, THUMBS_DIR
from hardmine.record.record import RunFolder
from hardmine.views.templates import script_json, thumbnail

if TYPE_CHECKING:
    from hardmine.views.pages import PageOptions

THUMB_SIZE = 224  # shown at 96 px on the card, at full size when a card is enlarged
META_COLUMNS = ("dx_type", "localization", "age", "sex")
SECTIONS = (
    ("fn", "Missed positives (false negatives)"),
    ("fp", "False alarms (false positives)"),
    ("low-margin", "Low margin (near the threshold)"),
    ("neighbour", "Neighbour expansions"),
    ("quarantined", "Quarantined: suspected label errors"),
    ("persistent", "Persistently hard (a seed in every round so far)"),
)
_NEIGHBOUR_REASON = re.compile(r"neighbour-of:(?P<seed>.+)@(?P<sim>-?[0-9.]+)$")


def section_of(row: pd.Series) -> str:
    """The gallery section of one ``mined.csv`` row."""
    if row["role"] == "quarantined":
        return "quarantined"
    if row["role"] == "neighbour":
        return "neighbour"
    if "misclassified" in str(row["reasons"]).split("|"):
        return "fn" if int(row["label"]) == 1 else "fp"
    return "low-margin"


def gallery_cards(run_dir: str | os.PathLike, r: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Card records for round ``r`` (one per mined row, plus persistent ones) and page facts."""
    folder = RunFolder(run_dir)
    mined = folder.mined(r)
    scores = folder.scores(r).set_index("id")
    threshold = folder.threshold(r)
    table = folder.samples().set_index("id")
    history = _score_history(folder, r)
    names = folder.class_names()
    cards = []
    for row in mined.itertuples(index=False):
        section = section_of(pd.Series(row._asdict()))
        seed_of, sim = "", None
        if section == "neighbour":
            match = _NEIGHBOUR_REASON.match(str(row.reasons).split("|")[0])
            if match:
                seed_of, sim = match["seed"], float(match["sim"])
        cards.append(_card(row.id, section, row.role, row.reasons, row.hardness, row.weight, seed_of, sim,
                           table, scores, history, names))  # fmt: skip
    _add_evidence(folder, r, [c for c in cards if c["section"] == "quarantined"], table, names)
    lesion_sizes = table["group"].astype(str).value_counts()
    for card in cards:  # a relabel is the whole lesion's: the page says how many images that is
        card["lesion_images"] = int(lesion_sizes.get(card["group"], 1))
    persistent = _persistent_ids(folder, r)
    hardness = dict(zip(mined["id"], mined["hardness"], strict=True))
    weight = dict(zip(mined["id"], mined["weight"], strict=True))
    for sample_id in persistent:
        cards.append(_card(sample_id, "persistent", "seed", f"seed in rounds 0-{r}", hardness.get(sample_id, 0.0),
                           weight.get(sample_id, 1.0), "", None, table, scores, history, names))  # fmt: skip
    opened, story = mining_story(folder, r)
    facts = {"round": r, "threshold": threshold, "positive": names[1], "negative": names[0], "run": folder.root.name,
             "store": f"hardmine-decisions:{folder.identity()}",
             "rounds": folder.rounds_with(MINED_FILE), "story": story, "made_returned": opened}  # fmt: skip
    return cards, facts


def default_round(folder: RunFolder) -> int:
    """The round a gallery opens on: the one whose mining made the model the run hands back
    (:func:`mining_story`)."""
    return mining_story(folder)[0]


def mining_story(folder: RunFolder, r: int | None = None) -> tuple[int, str]:
    """The mining that made the model the run hands back, as (round, sentence): round ``b - 1`` when the
    best round ``b`` > 0 is handed back; round 0 (what its model mined, which made nothing yet) when
    round 0 or the equal-epochs reference is; the latest mined round before a report exists. With ``r``,
    the sentence for that round's mining instead."""
    mined = folder.rounds_with(MINED_FILE)
    damage = None
    try:
        report = folder.report()
        best, returned = int(report["best_round"]), report.get("returned", "round")
    except (HardmineError, KeyError, TypeError, ValueError) as exc:
        report = None
        if (folder.root / REPORT_FILE).exists():  # there is one, and it cannot be read: say so, not "no report"
            damage = str(exc).splitlines()[0] if isinstance(exc, HardmineError) else f"{REPORT_FILE} lacks best_round"
            warn(f"{damage}; the gallery opens on the latest mined round, which may not be the mining behind the "
                 "model the run hands back")  # fmt: skip
    if report is None:
        default = folder.latest_round(None, needs=MINED_FILE)
        story = (f"the report cannot be read ({damage}): the latest mined round" if damage
                 else "no report yet: the latest mined round")  # fmt: skip
    elif returned == "reference":
        default, story = 0, ("the run hands back its equal-epochs reference (round 0's recipe for all the "
                             "rounds' epochs), which no mining made: this is what round 0's model mined")  # fmt: skip
    elif best == 0:
        default, story = 0, "the run hands back round 0, trained before any mining: this is what its model mined"
    else:
        default, story = best - 1, f"this mining made round {best}, the model the run hands back"
    if default not in mined:
        default = folder.latest_round(None, needs=MINED_FILE)
    if r is not None and r != default:
        made = f"; it made round {r + 1}" if (folder.round_dir(r + 1) / METRICS_FILE).exists() else ""
        story = f"what round {r}'s model mined{made} (the mining behind the returned model is round {default}'s)"
    return default, story


def _card(sample_id, section, role, reasons, hardness, weight, seed_of, sim, table, scores, history, names) -> dict:
    meta = table.loc[sample_id] if sample_id in table.index else None
    score = scores.loc[sample_id] if sample_id in scores.index else None
    label = int(meta["label"]) if meta is not None else int(score["label"])
    prob = float(score["prob_pos"]) if score is not None else float("nan")
    pred = int(score["pred"]) if score is not None else -1
    return {
        "id": str(sample_id),
        "section": section,
        "role": role,
        "reasons": str(reasons),
        "group": str(meta["group"]) if meta is not None else "",
        "label": names[label],
        "label01": label,
        "pred": names.get(pred, "?"),
        "prob_pos": _num(prob),
        "loss": _num(score["loss"]) if score is not None else None,
        "margin": _num(score["logit_margin"]) if score is not None else None,
        "hardness": _num(hardness),
        "suspicion": _num(score["suspicion"]) if score is not None and "suspicion" in score else None,
        "weight": _num(weight),
        "seed_of": seed_of,
        "sim": _num(sim) if sim is not None else None,
        "history": [_num(v) for v in history.get(str(sample_id), [])],
        # how the diagnosis was made (HAM10000: histo, follow_up, consensus, confocal) and where
        "meta": {k: str(meta[k]) for k in META_COLUMNS if meta is not None and k in meta and pd.notna(meta[k])},
        "path": str(meta["path"]) if meta is not None else "",
        "why": _why(section, names[label], names.get(pred, "?"), seed_of, sim, score, names),
    }


EVIDENCE_SHOWN = 4  # nearest other-lesion images shown on a quarantine card


def _add_evidence(folder: RunFolder, r: int, cards: list[dict], table: pd.DataFrame, names: dict[int, str]) -> None:
    """Give each quarantine card the nearest training images of other lesions (by the round's embeddings),
    with their labels: the neighbour evidence its suspicion rests on, as images."""
    if not cards or not folder.embeddings_path(r).exists():
        return
    from hardmine.core.index import exact_neighbours

    ids = folder.scores(r)["id"].astype(str).to_numpy()
    embeddings = folder.embeddings(r)
    groups = table["group"].reindex(ids).astype(str).to_numpy()
    row_of = {sample_id: row for row, sample_id in enumerate(ids)}
    rows = np.array([row_of[c["id"]] for c in cards if c["id"] in row_of])
    if not len(rows):
        return
    depth = min(len(ids), EVIDENCE_SHOWN + int(pd.Series(groups).value_counts().max()))
    sims, nbrs = exact_neighbours(embeddings, np.asarray(embeddings[rows]), depth)
    for card, row, sim_row, nbr_row in zip((c for c in cards if c["id"] in row_of), rows, sims, nbrs, strict=True):
        keep = [(j, float(v)) for j, v in zip(nbr_row, sim_row, strict=True) if groups[j] != groups[row]]
        card["evidence"] = [{"id": ids[j], "label": names[int(table.loc[ids[j], "label"])], "sim": round(v, 3),
                             "path": str(table.loc[ids[j], "path"])} for j, v in keep[:EVIDENCE_SHOWN]]  # fmt: skip


def _why(section: str, label: str, pred: str, seed_of: str, sim, score, names: dict[int, str]) -> str:
    """Why a card was picked, in words (the reason codes stay one click away)."""
    if section == "fn":
        return f"missed {label}: called {pred}"
    if section == "fp":
        return f"false alarm: {label} called {pred}"
    if section == "low-margin":
        return "near the threshold: the model is unsure"
    if section == "neighbour":
        return f"looks like hard case {seed_of}" + (f" (similarity {sim:.2f})" if sim is not None else "")
    if section == "quarantined":
        suspicion = score["suspicion"] if score is not None and "suspicion" in score else None
        level = f" (suspicion {float(suspicion):.2f})" if suspicion is not None and pd.notna(suspicion) else ""
        return f"label {label} doubted{level}: its nearest other lesions say otherwise"
    return "hard in every round so far"


def _num(value) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else round(value, 4)


def _score_history(folder: RunFolder, r: int) -> dict[str, list[float]]:
    """P(positive) of each training sample in rounds 0..r (NaN where not scored)."""
    history: dict[str, list[float]] = {}
    for q in range(r + 1):
        if not folder.scores_path(q).exists():
            continue
        frame = folder.scores(q)
        for sample_id, prob in zip(frame["id"], frame["prob_pos"], strict=True):
            history.setdefault(sample_id, [float("nan")] * q).append(float(prob))
        for values in history.values():
            values.extend([float("nan")] * (q + 1 - len(values)))
    return history


def _persistent_ids(folder: RunFolder, r: int) -> list[str]:
    """Seeds of every round 0..r (empty before two rounds exist)."""
    if r < 1 or any(not folder.mined_path(q).exists() for q in range(r + 1)):
        return []
    seeds = None
    for q in range(r + 1):
        mined = folder.mined(q)
        ids = set(mined.loc[mined["role"] == "seed", "id"])
        seeds = ids if seeds is None else seeds & ids
    return sorted(seeds or [])


def build_gallery(
    run_dir: str | os.PathLike,
    r: int | None = None,
    inline: bool = False,
    png: bool = False,
    top_n: int = 48,
) -> Path:
    """Write ``round-RRR/gallery/index.html`` (and ``hardest.png`` with ``png``); return the page path.

    ``r`` defaults to the best round on validation (the latest mined round before a report exists).
    """
    if top_n < 1:
        raise HardmineError(f"--top-n {top_n} is not valid; expected 1 or more seeds on the contact sheet")
    folder = RunFolder(run_dir)
    r = default_round(folder) if r is None else r
    if not folder.mined_path(r).exists():
        raise HardmineError(f"{folder.mined_path(r)} not found: round {r} was not mined; mined rounds: "
                            f"{', '.join(map(str, folder.rounds_with(MINED_FILE))) or 'none'}")  # fmt: skip
    cards, facts = gallery_cards(folder.root, r)
    built = [q for q in facts["rounds"] if folder.gallery_path(q).exists()]
    facts["galleries"] = sorted({r, *built})  # the page links only to galleries that exist
    paths = {card["id"]: card["path"] for card in cards}
    out = folder.gallery_path(r).parent
    thumbs = out / THUMBS_DIR
    thumbs.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def source_of(path: str) -> str:
        """The thumbnail's address in the page (written once per image)."""
        if not path:
            return ""
        if path not in written:
            data = thumbnail(path, THUMB_SIZE)
            if inline:
                written[path] = "data:image/jpeg;base64," + base64.b64encode(data).decode()
            else:
                name = f"{THUMBS_DIR}/{len(written):06d}.jpg"
                write_bytes(out / name, data)
                written[path] = name
        return written[path]

    for card in cards:
        path = card.pop("path")
        card["src"] = source_of(path)
        # the original at full size: opened from file:// directly, through `gallery --serve` by its id
        card["original"] = "" if inline or not path else Path(path).resolve().as_uri()
        for neighbour in card.get("evidence", []):
            neighbour["src"] = source_of(neighbour.pop("path"))
    page = render_page(cards, facts)
    index = write_bytes(folder.gallery_path(r), page.encode())
    if png:
        contact_sheet(cards, paths, r, out / HARDEST_PNG, top_n)
    return index


def build(run_dir: str | os.PathLike, options: PageOptions) -> Path:
    """The gallery as a page of the family (:mod:`hardmine.views.pages`): :func:`build_gallery` of ``options``."""
    return build_gallery(run_dir, options.round, inline=options.inline, png=options.png, top_n=options.top_n)


def where(folder: RunFolder, options: PageOptions) -> Path:
    """Where round ``options.round``'s gallery lies (default: :func:`default_round`)."""
    return folder.gallery_path(default_round(folder) if options.round is None else options.round)


def contact_sheet(cards: list[dict], paths: dict[str, str], r: int, out_path: Path, top_n: int = 48) -> Path:
    """PNG grid of the top-N hardest seeds (``paths``: id -> image file), titled with true
    label, P(positive) and loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hardmine.core.io import atomic_path

    seeds = [c for c in cards if c["role"] == "seed" and c["section"] != "persistent"]
    seeds = sorted(seeds, key=lambda c: -(c["loss"] or 0))[:top_n]
    cols = 8
    rows = max(1, -(-len(seeds) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.3), squeeze=False)
    from PIL import Image

    for ax, card in zip(axes.ravel(), seeds + [None] * (rows * cols - len(seeds)), strict=True):
        ax.axis("off")
        if card is None:
            continue
        with Image.open(paths[card["id"]]) as img:
            ax.imshow(img.convert("RGB"))
        ax.set_title(f"{card['id']}\ntrue {card['label']} | P(pos) {card['prob_pos']:.2f}\nloss {card['loss']:.2f}",
                     fontsize=7)  # fmt: skip
    fig.suptitle(f"round {r}: hardest {len(seeds)} seeds by loss (P(pos) = probability of the positive class)")
    with atomic_path(out_path, ".png") as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    plt.close(fig)
    return out_path


def render_page(cards: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The page: a jinja2 template with autoescape on; card data as a script-safe JSON block."""
    from hardmine.views.templates import render

    counts = {key: sum(c["section"] == key for c in cards) for key, _ in SECTIONS}
    return render(
        "gallery.html.jinja",
        facts=facts, sections=SECTIONS, counts=counts, short={k: n.split(" (")[0].split(":")[0] for k, n in SECTIONS},
        data=script_json({"cards": cards, "facts": facts}),
    )
