"""Do thresholds hit their nominal FPR? Nominal (q95) vs measured FPR on normal test films, every conditioning option.

Runs the real pipeline (``cxrad.run.run``, PatchCore + EfficientNet-Lite0 ImageNet weights, the default split and
threshold) on the phantom and on the real ``nih64_dev`` films, and writes ``experiments/protocol_fpr.md`` and
``.json``. The threshold is set on the calibration normals of the validation split, scored exactly as test films
are; the measured FPR is the share of normal *test* films flagged.

    .venv/bin/python benchmarks/protocol_fpr.py                  # 6 options x 2 data sets x seed 0 (~15 min, 2 CPUs)
    .venv/bin/python benchmarks/protocol_fpr.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import REPO, run_pipeline

from cxrad.metadata_conditioning.options import OPTIONS

DATA = {
    "phantom": ["data.source.n_normal=600", "data.source.n_abnormal=200", "data.source.image_size=128"],
    "nih64_dev": ["data=nih", "data.source.root=${paths.shared_data}/nih64_dev", "data.num_workers=0"],
}
COMMON = ["model=patchcore", "preprocessing.image_size=128", "progress_bar=false", "heatmap_top_k=0", "logger=none"]


def one_run(data: str, option: str, seed: int, work: Path) -> dict:
    overrides = [*DATA[data], *COMMON, f"metadata_conditioning={option}", f"seed={seed}"]
    _, metrics = run_pipeline(overrides, work / f"{data}_{option}_{seed}")
    return {
        "data": data,
        "option": option,
        "seed": seed,
        "nominal_fpr": round(1 - float(metrics["threshold_params"].get("q", 95.0)) / 100, 4),
        "test_fpr": metrics["fpr"],
        "test_fpr_ci": [metrics["ci"]["fpr"]["low"], metrics["ci"]["fpr"]["high"]],
        "fpr_ap_normals": metrics["fpr_ap_normals"],
        "fpr_pa_normals": metrics["fpr_pa_normals"],
        "n_test_normal": metrics["n_test_normal"],
        "n_val_reference": metrics["n_val_reference"],
        "n_val_calibration": metrics["n_val_calibration"],
        "val_fpr": metrics["val_fpr"],
    }


def cell(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def summary(rows: list[dict]) -> list[str]:
    """Mean test FPR over seeds per data set and option (one seed's FPR moves by several points)."""
    lines = [
        "| data | option | seeds | nominal FPR | mean test FPR (min to max) | mean normal test films | "
        "mean calibration films |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = dict.fromkeys((r["data"], r["option"]) for r in rows)
    for data, option in keys:
        group = [r for r in rows if (r["data"], r["option"]) == (data, option)]
        fprs = [r["test_fpr"] for r in group]
        lines.append(
            f"| {data} | {option} | {len(group)} | {cell(group[0]['nominal_fpr'])} | {cell(sum(fprs) / len(fprs))} "
            f"({cell(min(fprs))} to {cell(max(fprs))}) | {sum(r['n_test_normal'] for r in group) / len(group):.0f} | "
            f"{sum(r['n_val_calibration'] for r in group) / len(group):.0f} |"
        )
    return lines


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# Nominal vs measured FPR on normal test films",
        "",
        f"Regenerate: `{command}` (PatchCore, EfficientNet-Lite0 ImageNet weights, 128 px, default split and",
        "percentile q95 threshold (split-conformal order statistic); CI: patient-bootstrap 95%).",
        "",
        *summary(rows),
        "",
        "Per run:",
        "",
        "| data | option | seed | nominal FPR | test FPR [95% CI] | AP / PA normals | normal test films | "
        "reference / calibration films |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = f"[{cell(r['test_fpr_ci'][0])}, {cell(r['test_fpr_ci'][1])}]"
        lines.append(
            f"| {r['data']} | {r['option']} | {r['seed']} | {cell(r['nominal_fpr'])} | {cell(r['test_fpr'])} {ci} | "
            f"{cell(r['fpr_ap_normals'])} / {cell(r['fpr_pa_normals'])} | {r['n_test_normal']} | "
            f"{r['n_val_reference']} / {r['n_val_calibration']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS))
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "protocol_fpr")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the saved .json")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        args.out.with_suffix(".md").write_text(markdown(saved["rows"], saved["command"]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            for option in args.options:
                for seed in args.seeds:
                    rows.append(one_run(data, option, seed, Path(tmp)))
                    print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/protocol_fpr.py " + " ".join(sys.argv[1:])
    args.out.with_suffix(".json").write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=2))
    args.out.with_suffix(".md").write_text(markdown(rows, command.strip()))


if __name__ == "__main__":
    main()
