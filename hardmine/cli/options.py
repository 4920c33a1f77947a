"""Command-line option groups, declared once and mapped onto the configuration dataclasses.

Each :class:`OptionGroup` lists typer options whose names are the fields of one
section of :class:`hardmine.record.config.RunConfig`; :func:`with_options` adds the
groups to a command's signature and hands the command a validated
``RunConfig`` instead of loose option values, so ``train``, ``round`` and
``compare`` stay in step and nothing is read back by string keys.
"""

from __future__ import annotations

import enum
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer
from typer.core import TyperCommand

from hardmine.core.acquisition import ACQUISITION
from hardmine.core.errors import HardmineError
from hardmine.core.metrics import COST_FN, COST_FP, THRESHOLD_RULES
from hardmine.core.mining import EXPAND, HARDNESS, QUARANTINE, MiningConfig
from hardmine.data.images import AUGMENTS
from hardmine.data.sources import source_names
from hardmine.record import config as cfg
from hardmine.record.config import (
    SECTIONS,
    DataConfig,
    RoundsConfig,
    RunConfig,
    ScoringConfig,
    ThresholdConfig,
    TrainConfig,
)
from hardmine.record.layout import CONFIG_FILE
from hardmine.strategies import STRATEGIES, UPDATES


def choice(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str Enum of the valid values, so ``--help`` lists them and shells complete them."""
    return enum.Enum(name, {value: value for value in values}, type=str)


Source = choice("Source", source_names())
Augment = choice("Augment", AUGMENTS)
Acquisition = choice("Acquisition", tuple(ACQUISITION))
Schedule = choice("Schedule", cfg.SCHEDULES)
Loss = choice("Loss", cfg.LOSSES)
Weighting = choice("Weighting", cfg.CLASS_WEIGHTING)
Sampling = choice("Sampling", cfg.SAMPLING)
Rule = choice("Rule", THRESHOLD_RULES)
Hardness = choice("Hardness", HARDNESS)
Quarantine = choice("Quarantine", QUARANTINE)
Expand = choice("Expand", EXPAND)
ScoreSource = choice("ScoreSource", cfg.SCORE_SOURCES)
TriageEvidence = choice("TriageEvidence", cfg.TRIAGE_EVIDENCE)
Strategy = choice("Strategy", tuple(STRATEGIES))
Update = choice("Update", tuple(UPDATES))
SelectBy = choice("SelectBy", cfg.SELECT_BY)
Precision = choice("Precision", cfg.PRECISIONS)


@dataclass
class OptionGroup:
    """Options of one configuration section, named as its fields unless ``renamed`` says otherwise
    (parameter names are unique across groups: ``--scores`` sets ``scoring.source``, not ``data.source``)."""

    section: str
    kind: type
    panel: str
    options: dict[str, tuple[Any, Any]]
    convert: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values
    renamed: dict[str, str] = field(default_factory=dict)  # parameter name -> field name (after convert)

    def build(self, values: dict[str, Any]):
        values = {self.renamed.get(name, name): value.value if isinstance(value, enum.Enum) else value
                  for name, value in values.items()}  # fmt: skip
        return self.kind(**self.convert(values))

    def field_of(self, name: str) -> str:
        """The configuration field option ``name`` sets."""
        return self.renamed.get(name, name)


class Opt(NamedTuple):
    """An option's default and its typer declaration (flags, help, panel), joined as ``Annotated`` later."""

    default: Any
    info: Any


def _opt(default, *flags: str, help: str, panel: str) -> Opt:  # noqa: A002 - typer's own keyword
    return Opt(default, typer.Option(*flags, help=help, rich_help_panel=panel))


def _data_values(values: dict[str, Any]) -> dict[str, Any]:
    values = dict(values)
    if values.get("data") is not None:
        values["data"] = str(Path(values["data"]).resolve())
    values["metadata"] = str(values["metadata"]) if values.get("metadata") else None
    values["split_from"] = str(Path(values["split_from"]).resolve()) if values.get("split_from") else None
    return values


DATA = OptionGroup("data", DataConfig, "Data", {
    "data": (Path | None, _opt(None, "--data", help="Data folder (HAM10000 layout, manifest CSV or class folders); "
                               "required unless --config names a run's configuration.", panel="Data")),
    "source": (Source, _opt("auto", help="Data source kind (auto: detected from the folder).", panel="Data")),
    "metadata": (Path | None, _opt(None, help="HAM10000 metadata CSV if not DATA/HAM10000_metadata.csv.",
                                   panel="Data")),
    "positive": (str | None, _opt(None, help="Positive class(es), comma list (HAM10000 default: mel).", panel="Data")),
    "negative": (str | None, _opt(None, help="Negative class(es), comma list or 'rest' (HAM10000 default: nv).",
                                  panel="Data")),
    "skip_bad": (bool, _opt(False, "--skip-bad", help="Drop unreadable images instead of failing.", panel="Data")),
    "split_seed": (int, _opt(0, help="Seed of the grouped train/val/test split.", panel="Data")),
    "split_from": (Path | None, _opt(None, help="Take the split of this earlier run (same test lesions; new lesions "
                                     "go to train): after `hardmine relabel`, before against after.", panel="Data")),
}, _data_values)  # fmt: skip

_T = "Model and training"
TRAIN = OptionGroup("train", TrainConfig, _T, {
    "model": (str, _opt(cfg.DEFAULT_MODEL, help="efficientnet_lite0 (ImageNet weights offline), resnet50, "
                        "efficientnet_b0, convnext_tiny, any torchvision classifier, timm:NAME, or tiny (a small "
                        "CNN for tests and the demo).", panel=_T)),  # fmt: skip
    "weights": (str | None, _opt(None, help="imagenet | none | PATH to a state dict (default: imagenet; none for "
                                 "tiny).", panel=_T)),  # fmt: skip
    "image_size": (int | None, _opt(None, help=f"Images are resized to this square size (default: "
                                    f"{cfg.PRETRAINED_IMAGE_SIZE}; {cfg.TINY_IMAGE_SIZE} for tiny).",
                                    panel=_T)),  # fmt: skip
    "augment": (Augment, _opt("dermoscopy", help="Training augmentation: dermoscopy (flips, rotations, colour), "
                              "light (small shifts; for data with an orientation) or none.", panel=_T)),
    "epochs": (int, _opt(20, help="Epochs with the whole network trainable.", panel=_T)),
    "freeze_epochs": (int, _opt(0, help="Epochs training only the head first.", panel=_T)),
    "frozen": (bool, _opt(False, "--frozen", help="The fast path on a CPU: keep the pretrained backbone, fit the "
                          "head on its embeddings (round 0, rounds and active-learning steps; no epochs).",
                          panel=_T)),  # fmt: skip
    "batch_size": (int, _opt(64, help="Batch size.", panel=_T)),
    "lr": (float, _opt(3e-3, help="Peak learning rate (AdamW).", panel=_T)),
    "weight_decay": (float, _opt(1e-4, help="AdamW weight decay.", panel=_T)),
    "schedule": (Schedule, _opt("onecycle", help="Learning-rate schedule.", panel=_T)),
    "loss": (Loss, _opt("ce", help="Training loss.", panel=_T)),
    "class_weighting": (Weighting, _opt("inverse", help="Class weights for weighted-ce and focal.", panel=_T)),
    "focal_gamma": (float, _opt(2.0, help="Focal loss gamma.", panel=_T)),
    "sampling": (Sampling, _opt("oversample", help="oversample: class-balanced sampling.", panel=_T)),
    "seed": (int, _opt(0, help="Random seed.", panel=_T)),
    "device": (str, _opt("auto", help="auto | cpu | cuda | cuda:N.", panel=_T)),
    "workers": (int | None, _opt(None, help="DataLoader workers (default: chosen for the machine).", panel=_T)),
    "precision": (Precision, _opt("auto", help="Autocast: auto = bf16 on GPUs that run it natively, fp16 with "
                                  "loss scaling on older ones (T4, V100), fp32 on CPU.", panel=_T)),
    "threads": (int | None, _opt(None, help="Torch CPU threads (default: the cores free when the run starts).",
                                 panel=_T)),
}, renamed={"workers": "num_workers"})  # fmt: skip

_H = "Threshold"
THRESHOLD = OptionGroup("threshold", ThresholdConfig, _H, {
    "threshold_by": (Rule, _opt("cost", help="How the threshold is tuned on validation.", panel=_H)),
    "cost_fn": (float, _opt(COST_FN, help="Cost of a missed positive (false negative).", panel=_H)),
    "cost_fp": (float, _opt(COST_FP, help="Cost of a false alarm (false positive).", panel=_H)),
    "target": (float, _opt(0.9, help="Sensitivity target for --threshold-by target-sensitivity.", panel=_H)),
}, renamed={"threshold_by": "rule"})  # fmt: skip

_M = "Mining"
MINING = OptionGroup("mining", MiningConfig, _M, {
    "hardness": (Hardness, _opt("loss", help="Seed ranking (higher = harder).", panel=_M)),
    "band": (float, _opt(1.0, help="Low-margin band around the threshold, in log-odds.", panel=_M)),
    "max_frac": (float, _opt(0.2, help="At most this share of each class becomes seeds.", panel=_M)),
    "quarantine": (Quarantine, _opt("suspicion", help="Label-error triage (suspicion: out-of-sample evidence).",
                                    panel=_M)),
    "suspicion_threshold": (float | None, _opt(None, help="Quarantine at this label suspicion (0-1; default 0.7, "
                                               "or 0.8 with networks' evidence, --triage networks).",
                                               panel=_M)),  # fmt: skip
    "seed_suspicion": (float, _opt(0.55, help="Never upweight an image whose label suspicion (or the mean "
                                   "of its evidence) reaches this.", panel=_M)),  # fmt: skip
    "k": (int, _opt(10, help="Neighbours each seed spreads its weight to.", panel=_M)),
    "triage_k": (int, _opt(10, help="Other-lesion neighbours in the label-suspicion vote.", panel=_M)),
    "min_sim": (float, _opt(0.5, help="Least cosine similarity for a neighbour.", panel=_M)),
    "expand": (Expand, _opt("same-label", help="Which neighbours of a seed are boosted.", panel=_M)),
    "alpha": (float, _opt(1.0, help="Weight boost of seeds (x hardness).", panel=_M)),
    "beta": (float, _opt(0.5, help="Weight boost of neighbours (x contribution).", panel=_M)),
    "max_weight": (float, _opt(10.0, help="Weight cap, as a multiple of the mean.", panel=_M)),
    "ema": (float, _opt(0.5, help="Smoothing of weights across rounds (share of the previous).", panel=_M)),
    "index_codec": (str, _opt("flat", help="IVF storage for very large sets: flat | sq8 | pqM (e.g. pq64).",
                              panel=_M)),
    "balance": (bool, _opt(True, "--balance/--no-balance", help="Class-balance the curriculum weights.", panel=_M)),
    "trusted": (str | None, _opt(None, help="COLUMN=VALUE[,VALUE]: labels confirmed outside the model, never "
                                 "quarantined; 'none' doubts every label. Default: the source's own (HAM10000: "
                                 "dx_type=histo; others: none).", panel=_M)),
})  # fmt: skip

_S = "Scoring"


def _scoring_values(values: dict[str, Any]) -> dict[str, Any]:
    values = dict(values)
    if isinstance(values.get("embedding_dtype"), bool):  # --float16
        values["embedding_dtype"] = "float16" if values["embedding_dtype"] else "float32"
    return values


SCORING = OptionGroup("scoring", ScoringConfig, _S, {
    "scores": (ScoreSource, _opt("insample", help="Probabilities that drive mining (seed selection).", panel=_S)),
    "triage": (TriageEvidence, _opt("head", help="Label-suspicion evidence: head (an out-of-fold head on the round's "
                                    "embeddings; seconds) or networks (--oof networks trained out of fold once per "
                                    "run, also with --scores oof; held on weak models and real scans).",
                                    panel=_S)),  # fmt: skip
    "oof": (int, _opt(4, help="Folds of the networks trained out of fold (--scores oof, --triage networks).",
                      panel=_S)),  # fmt: skip
    "oof_epochs": (int | None, _opt(None, help="Epochs of each out-of-fold network (default: --epochs; train them "
                                    "to full length: short ones are weak evidence).", panel=_S)),
    "tta": (bool, _opt(False, "--tta", help="Average with the horizontally flipped image.", panel=_S)),
    "float16": (bool, _opt(False, "--float16", help="Store embeddings as float16 (half the disk and memory).",
                           panel=_S)),
    "audit_sim": (float, _opt(0.98, help="Split audit: list cross-split pairs at least this similar.", panel=_S)),
}, _scoring_values, renamed={"scores": "source", "oof": "oof_folds", "float16": "embedding_dtype"})  # fmt: skip

_R = "Rounds"
ROUNDS = OptionGroup("rounds", RoundsConfig, _R, {
    "round_epochs": (int | None, _opt(None, help="Epochs of each finetune round (default: --epochs / 4) or "
                                      "retrain round (default: --epochs).", panel=_R)),
    "round_lr": (float | None, _opt(None, help="Peak LR when fine-tuning a round (default: --lr / 3).", panel=_R)),
    "strategy": (Strategy, _opt("head", help="How a mining round trains: " + "; ".join(
        f"{name} ({kind.description})" for name, kind in STRATEGIES.items()) + ".", panel=_R)),
    "select_by": (SelectBy, _opt("sens_at_spec90", help="Best round by this validation metric.", panel=_R)),
    "guard_tol": (float, _opt(0.02, help="A round worse than the best by more than this is marked.", panel=_R)),
    "reference": (bool, _opt(True, "--reference/--no-reference", help="Also train the equal-epochs reference, "
                             "round 0's recipe for all the epochs the rounds train (RUN/reference/), and hand it "
                             "back when no round beats it on validation.", panel=_R)),
    "update": (Update | None, _opt(None, help="How an active-learning step trains on every answer so far (default: "
        "finetune; head with --frozen): " + "; ".join(f"{name} ({kind.description})" for name, kind in UPDATES.items())
        + ".", panel=_R)),
    "step_curriculum": (bool, _opt(False, "--step-curriculum/--no-step-curriculum", help="Weight an active-learning "
                                   "step's training by the previous step's mining (hard cases up, suspects out).",
                                   panel=_R)),
})  # fmt: skip

ALL_GROUPS = (DATA, TRAIN, THRESHOLD, MINING, SCORING, ROUNDS)


CONFIG_OPTION = typer.Option("--config", help=f"Start from a saved configuration (a run's {CONFIG_FILE}): every option "
                             "as it was, changed only where given on this command line.", rich_help_panel="Data")


def _saved_config(path: Path | None) -> RunConfig | None:
    if path is None:
        return None
    from hardmine.core.io import read_json

    if not path.is_file():
        raise HardmineError(f"--config {path} is not a file; expected a run's {CONFIG_FILE}")
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise HardmineError(f"--config {path} holds a JSON {type(saved).__name__}; expected a run's {CONFIG_FILE} "
                            "(an object of sections)")  # fmt: skip
    from dataclasses import fields

    for name, kind in SECTIONS.items():  # a misspelt option would otherwise be dropped without a word
        section = saved.get(name) or {}
        unknown = sorted(set(section) - {f.name for f in fields(kind)}) if isinstance(section, dict) else []
        if unknown:
            raise HardmineError(f"--config {path}: {name}.{unknown[0]} is not an option of hardmine's {name} "
                                f"section; expected one of {', '.join(f.name for f in fields(kind))}")  # fmt: skip
    return RunConfig.from_dict(saved)


def _given_on_command_line(ctx: typer.Context | None) -> set[str]:
    """Parameter names the user gave (command line or environment), not left at their defaults."""
    if ctx is None:
        return set()
    # by name: typer carries its own copy of click, whose ParameterSource is another enum
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, source in sources.items() if getattr(source, "name", "") in ("COMMANDLINE", "ENVIRONMENT")}


# Shown in full by --help; every other option of a panel is listed by name (--help-all shows them all).
COMMON_OPTIONS = {"--data", "--config", "--positive", "--negative", "--model", "--weights", "--frozen",
                  "--image-size", "--epochs", "--device", "--cost-fn"}  # fmt: skip
HELP_ALL = "help_all"  # the ctx.meta key --help-all sets


def show_all_help(ctx: typer.Context, value: bool) -> None:
    """``--help-all``: the help with every option in full."""
    if value:
        ctx.meta[HELP_ALL] = True
        typer.echo(ctx.get_help())
        raise typer.Exit()


HELP_ALL_OPTION = typer.Option("--help-all", is_eager=True, callback=show_all_help,
                               help="Show every option in full and exit.")  # fmt: skip


def with_options(*groups: OptionGroup, skip: tuple[str, ...] = ()):
    """Add the groups' options to a command's signature; the command receives them as
    ``config``: a :class:`RunConfig` (sections without options keep their defaults),
    validated, with the mining costs taken from the threshold costs. Options named in
    ``skip`` are left out (the command supplies them itself)."""

    def decorate(fn):
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # the command's own Annotated options, resolved
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
               if p.name != "config"]  # fmt: skip
        extra_config = [inspect.Parameter("options_context", inspect.Parameter.KEYWORD_ONLY, default=None,
                                          annotation=typer.Context),  # typer hands it in: which options were given
                        inspect.Parameter("help_all", inspect.Parameter.KEYWORD_ONLY, default=False,
                                          annotation=Annotated[bool, HELP_ALL_OPTION])]  # fmt: skip
        if DATA in groups and "data" not in skip:  # a command that makes a run can start from a saved configuration
            extra_config.append(inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                  annotation=Annotated[Path | None, CONFIG_OPTION]))  # fmt: skip
        extra = [  # typer's Annotated style: the declaration in the annotation, the default as the default
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[annotation, option.info],
                              default=inspect.Parameter.empty if option.default is ... else option.default)
            for group in groups
            for name, (annotation, option) in group.options.items()
            if name not in skip
        ]  # fmt: skip

        @functools.wraps(fn)
        def wrapper(**kwargs):
            kwargs.pop("help_all", None)  # eager: it printed the help and exited when given
            saved = _saved_config(kwargs.pop("config_file", None))
            given = _given_on_command_line(kwargs.pop("options_context", None))
            sections = {}
            for group in groups:
                values = {name: kwargs.pop(name) for name in group.options if name not in skip}
                built = group.build(values)
                if saved is not None:  # the saved section, changed where an option was given
                    changed = {group.field_of(name) for name in values if name in given}
                    built = replace(getattr(saved, group.section), **{f: getattr(built, f) for f in changed})
                sections[group.section] = built
            if saved is not None:
                sections = {name: getattr(saved, name) for name in SECTIONS} | sections
            config = RunConfig(**sections)
            if "data" in sections and "data" not in skip and not config.data.data:
                raise HardmineError(f"--data is required: a data folder or manifest CSV (or --config RUN/{CONFIG_FILE} "
                                    "to go on with a run's options)")  # fmt: skip
            from hardmine.run.opened import validate

            validate(config)
            return fn(**kwargs, config=config)

        wrapper.__signature__ = sig.replace(parameters=own + extra + extra_config)
        return wrapper

    return decorate


class PanelledCommand(TyperCommand):
    """Click's plain help (it reads at 80 columns), with the options under their panel's heading; in a panel of
    the configuration's options, only the common ones in full and the others by name, unless ``--help-all``."""

    def format_options(self, ctx, formatter) -> None:
        arguments, panels, named = [], {}, {}
        every = ctx.meta.get(HELP_ALL, False)
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            panel = getattr(param, "rich_help_panel", None) or "Options"
            if param.param_type_name == "argument":
                arguments.append(record)
            elif every or panel == "Options" or set(param.opts) & COMMON_OPTIONS:
                panels.setdefault(panel, []).append(record)
            else:
                panels.setdefault(panel, [])
                named.setdefault(panel, []).append(param.opts[0])
        for heading, rows in (("Arguments", arguments), *panels.items()):
            more = named.get(heading)
            if rows or more:
                with formatter.section(heading):
                    if rows:
                        formatter.write_dl(rows)
                    if more:
                        _write_names(formatter, ["also:", *more])
        if named:
            formatter.write_paragraph()
            formatter.write_text(f"{ctx.command_path} --help-all shows every option in full.")


def _write_names(formatter, names: list[str]) -> None:
    """Option names, wrapped between names only (a name is never broken at its hyphen)."""
    width = (formatter.width or 80) - formatter.current_indent
    line = ""
    for name in names:
        if line and len(line) + 1 + len(name) > width:
            formatter.write(" " * formatter.current_indent + line + "\n")
            line = ""
        line = f"{line} {name}" if line else name
    formatter.write(" " * formatter.current_indent + line + "\n")


METHOD_OPTION_HELP = ("KEY=VALUE, repeatable: an option of the acquisition function, e.g. positive_share=0.3 "
                      "(hardmine) or k=5 (seals).")
ROUND_HELP = ("best (the model the run hands back, chosen on validation), reference (the equal-epochs reference) "
              "or a round number.")  # fmt: skip


def parse_round(value: str) -> int | str | None:
    """``--round`` as ``predict`` and ``evaluate`` take it: None for best, "reference", or a round number."""
    if value not in ("best", "reference") and not value.isdigit():
        raise HardmineError(f"--round {value!r} is not valid; expected best, reference or a round number")
    return None if value == "best" else value if value == "reference" else int(value)
