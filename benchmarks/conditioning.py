"""Does conditioning remove the view shortcut? none / stratified / film / normative for each model.

Runs the real pipeline (``cxrad.run.run``) on (a) synthetic films with a strong view confound and (b) the real
NIH 64x64 sample with EfficientNet-Lite0, and writes ``experiments/conditioning.md`` and ``.json``.

    .venv/bin/python benchmarks/conditioning.py --quick    # PatchCore and PaDiM only (~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/conditioning.py --accelerator gpu --epochs 10 --extra data.num_workers=8   # all four
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from _common import REPO, run_pipeline

from cxrad.metadata_conditioning.options import OPTIONS

DEVICE = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
COLUMNS = (
    "image_auroc",
    "view_stratified_auroc",
    "normal_view_leakage_auroc",
    "fpr_ap_normals",
    "fpr_pa_normals",
    "view_only_auroc",
)
# The users' first selection criterion, from metrics.json (None when the test split has no such nodules).
NODULE_COLUMNS = ("nodule_auroc", "small_nodule_auroc")
SETTINGS = {
    # AP share 20% among normals vs 60% among abnormals, and the phantom's full AP effect.
    "synthetic_confound": [
        "data.source.n_normal=300",
        "data.source.n_abnormal=120",
        "data.source.ap_share_normal=0.2",
        "data.source.ap_share_abnormal=0.6",
        "data.source.ap_effect=1.0",
        "data.source.realism=simple",  # the phantom these tables were measured on (docs/phantom_benchmark.md)
    ],
    # The same confound with three times the films: ~27 AP normal validation films as the normative reference
    # (instead of 8-11) and ~50 AP normal test films, so that a leakage AUROC is measured to about +-0.05 instead of
    # +-0.08 per seed. Real NIH runs have thousands of normal validation films.
    "synthetic_confound_x3": [
        "data.source.n_normal=900",
        "data.source.n_abnormal=360",
        "data.source.ap_share_normal=0.2",
        "data.source.ap_share_abnormal=0.6",
        "data.source.ap_effect=1.0",
        "data.source.realism=simple",  # the phantom these tables were measured on (docs/phantom_benchmark.md)
    ],
    "nih64_lite0": [
        "data=nih",
        "data.source.root=${paths.shared_data}/nih64_sample",
        "data.split.strategy=normal_patients",  # one patient holds 19 of nih64_sample's 20 abnormal films
        "preprocessing.image_size=64",
        "data.split.val_fraction=0.4",
        "data.split.test_fraction=0.1",
        "data.num_workers=0",
    ],
}
MEMORY_BANK_CONDITIONS = (
    "none",
    "stratified",
    "film",
    "normative",
    "normative +metadata_conditioning.scale=false",
    "film_normative",
    "film_stratified",
)
CONDITIONS = {
    "patchcore": MEMORY_BANK_CONDITIONS,
    "padim": MEMORY_BANK_CONDITIONS,
    "fastflow": OPTIONS,
    "draem": OPTIONS,
}
TRAINED_MODELS = ("fastflow", "draem")  # gradient-trained: --epochs applies


def run_one(setting: str, model: str, conditioning: str, out_root: Path, args: argparse.Namespace) -> dict:
    option, *extra = conditioning.split()
    overrides = [
        *SETTINGS[setting],
        f"model={model}",
        f"metadata_conditioning={option}",
        *extra,
        "progress_bar=false",
        "heatmap_top_k=0",
        f"accelerator={args.accelerator}",
        *([f"model.max_epochs={args.epochs}"] if model in TRAINED_MODELS else []),
        *args.extra,
    ]
    cfg, metrics = run_pipeline(overrides, out_root / f"{setting}-{model}-{'-'.join([option, *extra])}")
    return {
        "setting": setting,
        "model": model,
        "conditioning": conditioning,
        "backbone": metrics["backbone"],
        "epochs": cfg.model.max_epochs,
        "seed": cfg.seed,
        "device": DEVICE,
        **{k: metrics[k] for k in COLUMNS},
        **{k: (metrics.get(k) or {}).get("auroc") for k in NODULE_COLUMNS},
    }


def conditions_for(model: str, requested: list[str] | None) -> list[str]:
    """The model's conditions to run: all, or those whose option is requested, plus requested variants.

    A requested option name (``normative``) runs that option and its listed variants; a requested string with
    overrides (``"film_normative metadata_conditioning.map_units=detector"``) runs as given, for the models that
    have its option.
    """
    listed = CONDITIONS[model]
    if not requested:
        return list(listed)
    requested = list(dict.fromkeys(" ".join(c.split()) for c in requested))  # one spelling each, once each
    chosen = [c for c in listed if c.split()[0] in requested]
    options = {c.split()[0] for c in listed}
    return chosen + [c for c in requested if " " in c and c.split()[0] in options and c not in chosen]


def markdown(rows: list[dict]) -> str:
    columns = (*COLUMNS, *NODULE_COLUMNS)
    head = "| setting | model | conditioning | " + " | ".join(columns) + " | AP-PA FPR gap | epochs | seed | device |"
    lines = [head, "|" + "---|" * (len(columns) + 7)]
    for row in rows:
        gap = (
            None
            if None in (row["fpr_ap_normals"], row["fpr_pa_normals"])
            else row["fpr_ap_normals"] - row["fpr_pa_normals"]
        )
        # rows measured before the nodule columns existed: n/a
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "n/a")) for c in columns]
        lines.append(
            f"| {row['setting']} | {row['model']} | {row['conditioning']} | "
            + " | ".join(cells)
            + f" | {'n/a' if gap is None else f'{gap:+.3f}'} | {row.get('epochs', 1)} | {row.get('seed', 0)} |"
            + f" {row.get('device', 'cpu')} |"
        )
    return "\n".join(lines)


def seed_summary(rows: list[dict]) -> str:
    """Mean (min to max) over the runs of each (setting, model, conditioning, CPU or GPU) measured more than once.

    Seeds change the synthetic films and the training run; FastFlow and DRAEM vary a lot from seed to seed, so a
    single row says little about them. CPU and GPU runs are not pooled (GPU training is not bit-identical).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        kind = "GPU" if "NVIDIA" in str(row.get("device", "")) else "CPU"
        key = (row["setting"], row["model"], row["conditioning"], kind, row.get("epochs", 1))
        groups.setdefault(key, []).append(row)
    metrics = ("image_auroc", "view_stratified_auroc", "normal_view_leakage_auroc", "AP-PA FPR gap", *NODULE_COLUMNS)
    lines = [
        "| setting | model | conditioning | run on | runs (seeds) | " + " | ".join(metrics) + " |",
        "|" + "---|" * (len(metrics) + 5),
    ]
    for (setting, model, conditioning, kind, _), found in groups.items():
        seeds = sorted(r.get("seed", 0) for r in found)  # a seed twice: a rerun (GPU training is not deterministic)
        if len(found) < 2:
            continue
        cells = []
        for metric in metrics:
            if metric != "AP-PA FPR gap" and any(metric not in r for r in found):  # not measured in every run
                cells.append("n/a")
                continue
            if metric == "AP-PA FPR gap":
                values = [r["fpr_ap_normals"] - r["fpr_pa_normals"] for r in found]
            else:
                values = [r[metric] for r in found if r.get(metric) is not None]
            if not values:  # e.g. no AP normals and abnormals in one split: no view-stratified AUROC
                cells.append("n/a")
                continue
            spec = "+.3f" if metric == "AP-PA FPR gap" else ".3f"
            mean, low, high = sum(values) / len(values), min(values), max(values)
            cells.append(f"{mean:{spec}} ({low:{spec}} to {high:{spec}})")
        head = f"| {setting} | {model} | {conditioning} | {kind} | {','.join(map(str, seeds))} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="PatchCore and PaDiM only")
    parser.add_argument("--models", nargs="+", choices=tuple(CONDITIONS), default=None)
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=None,
        help="only these options (e.g. none film_normative), or an option with overrides in quotes "
        '("film_normative metadata_conditioning.map_units=detector")',
    )
    parser.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=tuple(SETTINGS))
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of FastFlow and DRAEM")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "conditioning")
    args = parser.parse_args()
    models = args.models or (("patchcore", "padim") if args.quick else tuple(CONDITIONS))
    rows = []
    command = " ".join(["python benchmarks/conditioning.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for setting in args.settings:
                for conditioning in conditions_for(model, args.conditions):
                    try:
                        rows.append(run_one(setting, model, conditioning, Path(tmp), args))
                    except ValueError as error:  # e.g. too few normal validation films for an option
                        print(f"{setting} {model} {conditioning}: not run: {error}", flush=True)
                        continue
                    print(markdown(rows[-1:]).splitlines()[-1], flush=True)
                    # Written after every run, so an interrupted benchmark keeps what it measured.
                    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
                    summary = seed_summary(rows)
                    args.out.with_suffix(".md").write_text(
                        f"Regenerate: `{command}`\n\n{markdown(rows)}\n" + (f"\n{summary}\n" if summary else "")
                    )
    print(markdown(rows))


if __name__ == "__main__":
    main()
