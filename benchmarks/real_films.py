"""Real films decide: every model x metadata-conditioning option on the real NIH development sets, several splits.

For each data set, model and seed (one patient-wise split per seed, the protocol's default), the real pipeline
(:func:`cxrad.run.fit_and_score` then :func:`cxrad.run.evaluate`, exactly what ``python -m cxrad.run`` does) is
run for every option. Options that change nothing inside the detector (``none``, ``stratified``, ``normative`` and
their covariate / unit variants) are all scored from one fit of it; FiLM options from one fit with the FiLM; the
training-film reference (``reference_source=train``) from one fit on the remaining training films. Each option's
validation roles are assigned exactly as its own run would assign them.

Writes ``experiments/real_films.json`` (every run's metrics) and ``.md`` (means over seeds with patient-bootstrap
95% intervals over the union of the splits' patients, and paired differences to ``none`` on the same films).

    .venv/bin/python benchmarks/real_films.py --seeds 0 1 2                      # both sets, PatchCore + PaDiM
    .venv/bin/python benchmarks/real_films.py --models global_gaussian --seeds 0 1 2 --append
    .venv/bin/python benchmarks/real_films.py --render                           # rewrite the .md from the .json

A ``--models`` entry is a registered model name or ``label: override override ...`` (a variant, e.g.
``"patchcore/crop0.7: model=patchcore preprocessing.center_crop=0.7"``). ``--pretrain-epochs N`` first pretrains
the backbone with ``cxrad.pretrain`` on each split's normal training films and runs on those weights:

    benchmarks/real_films.py --append --pretrain-epochs 20 --models "patchcore/simclr20: model=patchcore"
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import re
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from _common import REPO
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch import seed_everything
from omegaconf import DictConfig, open_dict
from scipy.stats import kendalltau, spearmanr

from cxrad.data.samples import load_samples
from cxrad.metadata_conditioning import assign_val_roles
from cxrad.metrics.bootstrap import mean_over_splits
from cxrad.model.registry import model_spec
from cxrad.pretrain import SHARED_OVERRIDES, WEIGHTS_FILE, override_key, pretrain
from cxrad.run import evaluate, fit_and_score
from cxrad.validate import validate

DATA = {
    "nih64_dev": ["data=nih", "data.source.root=${paths.shared_data}/nih64_dev", "data.num_workers=0"],
    "nih256_sample": ["data=nih", "data.source.root=${paths.shared_data}/nih256_sample", "data.num_workers=0"],
    # The phantom at about nih64_dev's size, to see whether it ranks the options as the real films do.
    "phantom_realistic": [
        "data=synthetic",
        "data.source.n_normal=220",
        "data.source.n_abnormal=280",
        "data.num_workers=0",
    ],
    "phantom_simple": [
        "data=synthetic",
        "data.source.realism=simple",
        "data.source.n_normal=220",
        "data.source.n_abnormal=280",
        "data.num_workers=0",
    ],
}
COMMON = ["progress_bar=false", "heatmap_top_k=0", "logger=none"]
TRAIN_REFERENCE = ["metadata_conditioning.reference_source=train", "metadata_conditioning.reference_fraction=0.3"]
# fit -> the option config it is fitted under, and the options scored from that one fit (name -> overrides).
# A fit's option only decides the model and which maps are kept; every scored option gets its own roles.
FITS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "image": (
        ["metadata_conditioning=normative"],
        {
            "none": ["metadata_conditioning=none"],
            "stratified": ["metadata_conditioning=stratified"],
            "stratified[view]": ["metadata_conditioning=stratified", "metadata_conditioning.covariates=[view]"],
            "normative": ["metadata_conditioning=normative"],
            "normative[view]": ["metadata_conditioning=normative", "metadata_conditioning.covariates=[view]"],
            "normative[view,sex]": ["metadata_conditioning=normative", "metadata_conditioning.covariates=[view,sex]"],
            "normative[]": ["metadata_conditioning=normative", "metadata_conditioning.covariates=[]"],
            "normative/detector": ["metadata_conditioning=normative", "metadata_conditioning.map_units=detector"],
            "normative/detector[view]": [
                "metadata_conditioning=normative",
                "metadata_conditioning.map_units=detector",
                "metadata_conditioning.covariates=[view]",
            ],
        },
    ),
    "train_reference": (
        ["metadata_conditioning=normative", *TRAIN_REFERENCE],
        {
            "normative/train": ["metadata_conditioning=normative", *TRAIN_REFERENCE],
            "normative/train[view]": [
                "metadata_conditioning=normative",
                *TRAIN_REFERENCE,
                "metadata_conditioning.covariates=[view]",
            ],
            "normative/detector/train[view]": [
                "metadata_conditioning=normative",
                *TRAIN_REFERENCE,
                "metadata_conditioning.map_units=detector",
                "metadata_conditioning.covariates=[view]",
            ],
            "stratified/train[view]": [
                "metadata_conditioning=stratified",
                *TRAIN_REFERENCE,
                "metadata_conditioning.covariates=[view]",
            ],
        },
    ),
    "film": (
        ["metadata_conditioning=film_normative"],
        {
            "film": ["metadata_conditioning=film"],
            "film_normative": ["metadata_conditioning=film_normative"],
            "film_stratified": ["metadata_conditioning=film_stratified"],
        },
    ),
}
MODELS = {
    "patchcore": ["model=patchcore"],
    "padim": ["model=padim"],
}
ROW_METRICS = (
    "image_auroc",
    "view_stratified_auroc",
    "view_shortcut",
    "normal_view_leakage_auroc",
    "view_only_auroc",
    "nodule_auroc",
    "fpr",
    "fpr_ap_normals",
    "fpr_pa_normals",
    "sex_shortcut",
    "age_shortcut",
    "val_image_auroc",
    "val_view_stratified_auroc",
    "n_train",
    "n_val_reference",
    "n_val_calibration",
    "n_test",
    "n_test_normal",
)
SUMMARY = ("image_auroc", "view_stratified_auroc", "view_shortcut", "nodule_auroc")
# The reference every variant's `none` is paired with (same seed, same films): image-only PatchCore, the field's
# baseline (and cxrad's default model before the benchmark chose model=ensemble). Kept fixed so rows stay comparable.
REFERENCE_MODEL = "patchcore"
log = logging.getLogger("real_films")


def composed(overrides: list[str], config: str = "config") -> DictConfig:
    """The real config (``conf/<config>.yaml``) with ``overrides``, as Hydra composes it for one job (no run dir)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def with_output(cfg: DictConfig, out: Path) -> DictConfig:
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    out.mkdir(parents=True, exist_ok=True)
    return cfg


# Overrides that shape the split, the films, the backbone or the SimCLR run: they reach the pretraining too.
PRETRAIN_KEYS = (*SHARED_OVERRIDES, "ssl")


def pretrained_weights(data: str, model: str, seed: int, size: int, epochs: int, work: Path, extra: list[str]) -> Path:
    """``python -m cxrad.pretrain`` (SimCLR, ``epochs``) on this split's normal training films; reused when saved.

    The overrides come in ``one_fit``'s order (data, the model's, size, seed, ``extra``), so the split is the one
    its runs draw and the pretraining never reads a validation or test film of them. The saved weights are keyed
    by every override the pretraining got.
    """

    def shaping(overrides: list[str]) -> list[str]:
        return [o for o in overrides if override_key(o).split(".")[0] in PRETRAIN_KEYS]

    overrides = [*DATA[data], *shaping(MODELS[model]), f"preprocessing.image_size={size}", f"seed={seed}"]
    overrides += [*shaping(extra), f"ssl.max_epochs={epochs}", "progress_bar=false"]
    digest = hashlib.sha1(" ".join(overrides).encode()).hexdigest()[:8]
    out = work / "pretrain" / f"{data}_{seed}_{size}px_{epochs}ep_{digest}"
    weights = out / WEIGHTS_FILE
    if not weights.is_file():
        cfg = with_output(composed(overrides, config="pretrain"), out)
        log.info("pretraining %s epochs for %s seed %s", epochs, model, seed)
        pretrain(cfg)
    return weights


def one_fit(data: str, model: str, fit: str, seed: int, size: int, work: Path, extra: list[str]) -> list[dict]:
    """Fit ``model`` once under ``fit``'s option and score every option of that fit; one row per option."""
    base = [*DATA[data], *COMMON, *MODELS[model], f"preprocessing.image_size={size}", f"seed={seed}", *extra]
    fit_overrides, options = FITS[fit]
    cfg = with_output(composed([*base, *fit_overrides]), work / f"{data}_{model}_{seed}_{fit}")
    validate(cfg)
    seed_everything(seed, workers=True)
    start = time.perf_counter()
    samples, report, skipped = load_samples(cfg.data, seed, cfg.preprocessing.image_size)
    scored = fit_and_score(cfg, Path(cfg.paths.output_dir), samples, skipped)
    fit_seconds = time.perf_counter() - start
    rows = []
    for option, overrides in options.items():
        out = work / f"{data}_{model}_{seed}_{fit}" / option.replace("/", "_").replace("[", "-").replace("]", "")
        option_cfg = with_output(composed([*base, *overrides]), out)
        validate(option_cfg)
        roles = assign_val_roles(samples, option_cfg.metadata_conditioning, seed)
        if not roles["split"].equals(scored.samples["split"]):  # a train reference must be the fit's own
            msg = f"option {option} moves other training films than fit {fit} held out; give them one reference"
            raise RuntimeError(msg)
        metrics, _, _ = evaluate(option_cfg, replace(scored, samples=roles), out, report)
        row = {"data": data, "model": model, "option": option, "fit": fit, "seed": seed, "image_size": size}
        row.update({k: metrics.get(k) for k in ROW_METRICS})
        row["ci"] = {k: metrics["ci"].get(k) for k in ("image_auroc", "view_stratified_auroc", "view_shortcut")}
        row["covariates_used"] = metrics.get("covariates_used")
        row["covariates_dropped"] = metrics.get("covariates_dropped")
        row["fit_seconds"] = round(fit_seconds, 1)
        row["predictions"] = str(out / "predictions.csv")
        rows.append(row)
        log.info("%s", json.dumps({k: row[k] for k in ("data", "model", "option", "seed", *SUMMARY[:3])}))
    return rows


def cell(value: object, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def interval(result: dict) -> str:
    return f"{cell(result['estimate'])} [{cell(result['low'])}, {cell(result['high'])}]"


@functools.cache
def predictions(path: str) -> pd.DataFrame:
    """A run's predictions table, read once: a group's runs are also every other option's and variant's pairs."""
    return pd.read_csv(path)


def summarise(rows: list[dict], n_boot: int, previous: list[dict] | None = None) -> list[dict]:
    """Per data set, model and option: means over seeds with intervals, and paired differences to ``none``.

    A group whose runs' predictions are no longer on disk keeps its entry from ``previous`` (the saved summary);
    a group whose ``none`` predictions are gone gets no paired differences.
    """
    out = []
    kept = {(s["data"], s["model"], s["option"]): s for s in previous or []}
    groups = dict.fromkeys((r["data"], r["model"], r["option"]) for r in rows)
    for data, model, option in groups:
        members = [r for r in rows if (r["data"], r["model"], r["option"]) == (data, model, option)]
        if not all(Path(r["predictions"]).is_file() for r in members):
            if (data, model, option) in kept:
                out.append(kept[(data, model, option)])
            else:
                log.warning("%s %s %s: predictions gone and no saved summary; left out", data, model, option)
            continue
        group = sorted(members, key=lambda r: r["seed"])
        runs = [predictions(r["predictions"]) for r in group]
        entry = {"data": data, "model": model, "option": option, "seeds": [r["seed"] for r in group]}
        entry.update({metric: mean_over_splits(runs, metric, n_boot=n_boot) for metric in SUMMARY})
        # Paired differences need ``none``'s predictions of the same seed; without them the cells stay empty.
        if option != "none":
            entry.update(paired_to(rows, group, (data, model, "none"), "minus_none", n_boot))
        if option == "none" and model != REFERENCE_MODEL:
            entry.update(paired_to(rows, group, (data, REFERENCE_MODEL, "none"), "minus_default", n_boot))
        if option == "none" and base_model(model) not in (model, REFERENCE_MODEL):
            entry.update(paired_to(rows, group, (data, base_model(model), "none"), "minus_base", n_boot))
        fprs = [r["fpr"] for r in group if r["fpr"] is not None]
        entry["fpr"] = sum(fprs) / len(fprs) if fprs else None
        for view in ("ap", "pa"):
            values = [r[f"fpr_{view}_normals"] for r in group if r[f"fpr_{view}_normals"] is not None]
            entry[f"fpr_{view}"] = sum(values) / len(values) if values else None
        entry["view_only_auroc"] = sum(r["view_only_auroc"] or 0 for r in group) / len(group)
        entry["n_val_reference"] = sum(r["n_val_reference"] for r in group) / len(group)
        entry["covariates_used"] = sorted({",".join(r["covariates_used"] or []) or "-" for r in group})
        out.append(entry)
    return out


def paired_to(rows: list[dict], group: list[dict], base_key: tuple, suffix: str, n_boot: int) -> dict:
    """``group``'s paired differences to the runs of ``base_key`` (data, model, option) of the same seeds.

    Pairs are the test films both runs scored (one split per seed, so the same films); ``{}`` when no run of the
    base has its predictions on disk.
    """
    base = {
        r["seed"]: r
        for r in rows
        if (r["data"], r["model"], r["option"]) == base_key and Path(r["predictions"]).is_file()
    }
    paired = [r for r in group if r["seed"] in base]
    if not paired:
        return {}
    runs = [predictions(r["predictions"]) for r in paired]
    bases = [predictions(base[r["seed"]]["predictions"]) for r in paired]
    out = {f"{metric}_{suffix}": mean_over_splits(runs, metric, bases, n_boot=n_boot) for metric in SUMMARY}
    out[f"seeds_{suffix}"] = [r["seed"] for r in paired]
    return out


def base_model(label: str) -> str:
    """The model a variant label varies: ``global_gaussian/simclr30`` and ``patchcore@224`` -> their model."""
    return re.split(r"[/@]", label)[0]


def comparison(summary: list[dict], suffix: str, title: str, against: str) -> list[str]:
    """The ``none`` rows' paired differences ``<metric>_<suffix>``, one table."""
    lines = [
        title,
        "",
        f"Differences (variant - {against}) of the mean over the common seeds [95% patient-bootstrap interval];",
        "only variants whose predictions are on disk (`--refit` runs a group again).",
        "",
        f"| set | model | seeds | image AUROC - {against} | within-view AUROC - {against} | "
        f"view shortcut - {against} | nodule AUROC - {against} |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        if f"view_stratified_auroc_{suffix}" in s:
            cells = " | ".join(interval(s[f"{m}_{suffix}"]) for m in SUMMARY)
            lines.append(f"| {s['data']} | {s['model']} | {len(s[f'seeds_{suffix}'])} | {cells} |")
    return [*lines, ""]


def default_comparison(summary: list[dict]) -> list[str]:
    """Every variant under ``none`` against the reference model, and against its own model, on the same films."""
    return [
        *comparison(
            summary,
            "minus_default",
            f"## Each model against the reference ({REFERENCE_MODEL}, `none`), paired on the same test films",
            REFERENCE_MODEL,
        ),
        *comparison(
            summary,
            "minus_base",
            "## Each variant against its own model (e.g. `global_gaussian/simclr30` - `global_gaussian`), `none`",
            "model",
        ),
    ]


def rank_agreement(summary: list[dict], model: str = "patchcore") -> list[str]:
    """Spearman / Kendall correlation of ``model``'s options' within-view AUROC between every two data sets."""
    wv = {(s["data"], s["option"]): s["view_stratified_auroc"]["estimate"] for s in summary if s["model"] == model}
    sets = list(dict.fromkeys(data for data, _ in wv))
    lines = [
        f"## Do the data sets rank the conditioning options alike? ({model}, within-view AUROC)",
        "",
        "| data set | data set | options | Spearman | Kendall |",
        "|---|---|---|---|---|",
    ]
    for i, first in enumerate(sets):
        for second in sets[i + 1 :]:
            common = [o for (d, o) in wv if d == first and (second, o) in wv]
            if len(common) < 3:
                continue
            a, b = [wv[(first, o)] for o in common], [wv[(second, o)] for o in common]
            lines.append(
                f"| {first} | {second} | {len(common)} | {spearmanr(a, b)[0]:.2f} | {kendalltau(a, b)[0]:.2f} |"
            )
    return [*lines, ""]


def markdown(summary: list[dict], rows: list[dict], command: str) -> str:
    sizes = sorted({(r["data"], r["image_size"]) for r in rows})
    lines = [
        "# Real films: every model x metadata-conditioning option",
        "",
        f"Regenerate: `{command}`. Image sizes: {', '.join(f'{d} {s} px' for d, s in sizes)}; EfficientNet-Lite0",
        "ImageNet weights (a label `model@N` ran at N px, `/Nep` trained N epochs, `/resnet18_random` on a",
        "random-weight ResNet-18, `/simclrN` on weights pretrained N epochs by `cxrad.pretrain` on that split's",
        "normal training films, `--pretrain-epochs N`); the protocol's default split (`patient_random`) drawn once",
        "per seed; percentile q95 threshold on the calibration normals. Each cell: mean over seeds [95%",
        "patient-bootstrap interval over the union of the splits' patients]. *within-view* = mean of the PA and AP",
        "AUROCs; *view shortcut* = |normal view leakage - 0.5| (0 = the score does not tell a normal AP film from a",
        "normal PA one);",
        "*- none* = paired difference to `none` on the same test films (same fit for every image-only option).",
        "Options: `[...]` the covariates (default all of view, sex, age); `/detector` map units of the detector;",
        "`/train` reference = 30% of the normal training patients (held out of the fit) instead of half the",
        "normal validation patients. `covariates used` lists what the reference supported",
        "(`min_reference_films`). Runs' predictions live under `--work` (not in the repository); `--render` recomputes",
        "the intervals of the groups whose predictions are on disk and keeps the saved ones of the others.",
        "",
    ]
    for data in dict.fromkeys(s["data"] for s in summary):
        lines += [f"## {data}", ""]
        lines += [
            "| model | option | seeds | image AUROC | within-view AUROC | within-view - none | view shortcut | "
            "view shortcut - none | nodule AUROC | test FPR (AP / PA normals) | view only | reference films | "
            "covariates used |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in (s for s in summary if s["data"] == data):

            def diff(metric: str, s: dict = s) -> str:
                return interval(s[f"{metric}_minus_none"]) if f"{metric}_minus_none" in s else "-"

            lines.append(
                f"| {s['model']} | {s['option']} | {len(s['seeds'])} | {interval(s['image_auroc'])} | "
                f"{interval(s['view_stratified_auroc'])} | {diff('view_stratified_auroc')} | "
                f"{interval(s['view_shortcut'])} | {diff('view_shortcut')} | {interval(s['nodule_auroc'])} | "
                f"{cell(s['fpr'])} ({cell(s['fpr_ap'])} / {cell(s['fpr_pa'])}) | {cell(s['view_only_auroc'])} | "
                f"{s['n_val_reference']:.0f} | {' / '.join(s['covariates_used'])} |"
            )
        lines.append("")
    lines += default_comparison(summary)
    lines += rank_agreement(summary)
    lines += [
        "Per run (seed): image / within-view AUROC, view shortcut, test FPR, fit seconds (2 CPU cores):",
        "",
        "| data | model | option | seed | image AUROC | within-view | view shortcut | FPR | n test | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['model']} | {r['option']} | {r['seed']} | {cell(r['image_auroc'])} | "
            f"{cell(r['view_stratified_auroc'])} | {cell(r['view_shortcut'])} | {cell(r['fpr'])} | {r['n_test']} | "
            f"{r['fit_seconds']} |"
        )
    return "\n".join(lines) + "\n"


HEADLINE_OPTIONS = ("none", "normative/detector/train[view]", "normative", "film_normative")


def headline(summary: list[dict], model: str) -> str:
    """The README's table: every model and variant under ``none``; ``model`` under the main conditioning options."""
    lines = [
        "| set | model | conditioning | seeds | image AUROC | within-view AUROC | view shortcut | view only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    real = sorted((s for s in summary if s["data"] in ("nih64_dev", "nih256_sample")), key=lambda s: s["data"])
    for s in real:
        if s["option"] == "none" or (s["model"] == model and s["option"] in HEADLINE_OPTIONS):
            lines.append(
                f"| {s['data']} | {s['model']} | {s['option']} | {len(s['seeds'])} | {interval(s['image_auroc'])} | "
                f"{interval(s['view_stratified_auroc'])} | {interval(s['view_shortcut'])} | "
                f"{cell(s['view_only_auroc'])} |"
            )
    return "\n".join(lines)


def check_pretrain_label(parser: argparse.ArgumentParser, label: str, epochs: int) -> None:
    """``--pretrain-epochs``: the label names the weights (saved rows are told apart by label) and a backbone exists."""
    if f"/simclr{epochs}" not in label:
        parser.error(
            f"--pretrain-epochs {epochs}: label {label!r} must contain /simclr{epochs}, e.g. '{label}/simclr{epochs}'"
        )
    name = next((o.split("=", 1)[1] for o in MODELS[label] if o.startswith("model=")), label)
    if not model_spec(name).uses_backbone:
        parser.error(f"--pretrain-epochs: model={name} reads no timm backbone, so there is nothing to pretrain")


def run_key(row: dict) -> tuple:
    """The fit a row came from: data set, model label, fit, seed."""
    return row["data"], row["model"], row["fit"], row["seed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--fits", nargs="+", default=list(FITS), choices=list(FITS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run, e.g. preprocessing.x=y")
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        help="first pretrain the backbone (cxrad.pretrain, SimCLR) this many epochs on each split's normal training "
        "films and run with those weights (label such models /simclrN)",
    )
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "real_films")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "real_films")
    parser.add_argument("--append", action="store_true", help="add to the saved rows (same settings) instead")
    parser.add_argument("--refit", action="store_true", help="with --append: run saved groups again, replacing them")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the saved .json")
    parser.add_argument("--headline", metavar="MODEL", help="print the README's table (MODEL's options in full)")
    args = parser.parse_args()
    if args.refit and not args.append:
        parser.error("--refit replaces saved groups: give --append too (without it the saved rows are dropped)")
    for entry in args.models:
        label, _, overrides = entry.partition(":")
        MODELS.setdefault(label.strip(), overrides.split() if overrides else [f"model={label.strip()}"])
        if args.pretrain_epochs:
            check_pretrain_label(parser, label.strip(), args.pretrain_epochs)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    saved_path = args.out.with_suffix(".json")
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() and (args.append or args.render) else None
    rows = saved["rows"] if saved else []
    commands = saved["commands"] if saved else []
    if not args.render:
        commands.append(("python benchmarks/real_films.py " + shlex.join(sys.argv[1:])).strip())
        for data in args.data:
            for entry in args.models:
                model = entry.partition(":")[0].strip()
                for seed in args.seeds:
                    for fit in args.fits:
                        key = (data, model, fit, seed)
                        saved_at = [i for i, r in enumerate(rows) if run_key(r) == key]
                        if saved_at and not args.refit:
                            continue
                        extra = list(args.extra)
                        if args.pretrain_epochs:
                            weights = pretrained_weights(
                                data, model, seed, args.image_size, args.pretrain_epochs, args.work, args.extra
                            )
                            extra += ["backbone.pretrained=true", f"backbone.weights_path={weights}"]
                        new = one_fit(data, model, fit, seed, args.image_size, args.work, extra)
                        for row in new:
                            row["pretrain_epochs"] = args.pretrain_epochs
                        # --refit: the new rows take the saved ones' place (tables keep their order)
                        at = saved_at[0] if saved_at else len(rows)
                        rows = [*rows[:at], *new, *(r for i, r in enumerate(rows[at:], at) if i not in saved_at)]
                        # the saved summary stays: it is all that is left of groups whose predictions are gone
                        partial = {
                            "commands": commands,
                            "rows": rows,
                            "summary": saved.get("summary", []) if saved else [],
                        }
                        saved_path.write_text(json.dumps(partial, indent=2))
    summary = summarise(rows, args.n_boot, saved.get("summary") if saved else None)
    saved_path.write_text(json.dumps({"commands": commands, "rows": rows, "summary": summary}, indent=2))
    args.out.with_suffix(".md").write_text(markdown(summary, rows, " ; ".join(commands)))
    if args.headline:
        print(headline(summary, args.headline))  # noqa: T201 - the table is the output


if __name__ == "__main__":
    main()
