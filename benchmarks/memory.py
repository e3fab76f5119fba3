"""Peak memory of fitting PatchCore and PaDiM vs the number of training films: cxrad (streaming) vs stock anomalib.

Each measurement runs in a fresh process (peak RSS via ``ru_maxrss``) that fits one model on ``n`` synthetic
films at 224 px with resnet18 (random weights: memory does not depend on them). Stock anomalib stacks every
embedding before fitting; above ``--stock-max`` films it is not run (it would need more RAM than the machine
has or hours of k-center greedy) and its peak is extrapolated linearly from the sizes it ran, marked as such.
Stock PatchCore's greedy is cut after its first picks (its memory is the stacked and projected bank; the
greedy loop itself adds one float per patch), so its time is not reported here: see patchcore_fit.py.

    .venv/bin/python benchmarks/memory.py                              # 500, 1000, 2000, 5000 films
    .venv/bin/python benchmarks/memory.py --sizes 200 400 --stock-max 400
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import compose_config, engine, loader, peak_rss_gb, synthetic_films, write_json

IMAGE_SIZE = 224


def child(model_name: str, impl: str, n: int, ratio: float) -> dict:
    from omegaconf import OmegaConf

    from cxrad.backbone import BackboneConfig
    from cxrad.model import build_padim, build_patchcore

    films = synthetic_films(n, 0, IMAGE_SIZE)
    train = loader(films, IMAGE_SIZE, batch_size=32, shuffle=True)
    backbone = BackboneConfig(
        **{**OmegaConf.to_container(compose_config("backbone=resnet18").backbone), "pretrained": False}
    )
    baseline = peak_rss_gb()
    if model_name == "patchcore" and impl == "cxrad":
        model = build_patchcore(backbone, IMAGE_SIZE, coreset_sampling_ratio=ratio)
    elif model_name == "patchcore":
        from patchcore_fit import stock_patchcore

        model = stock_patchcore(backbone, IMAGE_SIZE, max_selections=20)
        model.coreset_sampling_ratio = ratio
    elif impl == "cxrad":
        model = build_padim(backbone, IMAGE_SIZE)
    else:
        from anomalib.models import Padim

        from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor

        model = Padim(
            backbone="resnet18",
            layers=backbone.layers_for("padim"),
            pre_trained=False,
            n_features=100,
            pre_processor=pre_processor(IMAGE_SIZE, backbone),
            **NO_ANOMALIB_POSTPROCESSING,
        )
    with tempfile.TemporaryDirectory() as work:
        eng, _ = engine(Path(work))
        start = time.perf_counter()
        eng.fit(model=model, train_dataloaders=train)
        seconds = time.perf_counter() - start
    return {
        "model": model_name,
        "impl": impl,
        "n_train": n,
        "peak_rss_gb": peak_rss_gb(),
        "rss_before_fit_gb": baseline,
        "fit_s": seconds,
        "coreset_ratio": ratio if model_name == "patchcore" else None,
    }


def extrapolate(rows: list[dict], sizes: list[int]) -> list[dict]:
    """Linear fit of stock's peak RSS over the sizes it ran, evaluated where it did not."""
    out = []
    for model_name in ("patchcore", "padim"):
        ran = [r for r in rows if r["model"] == model_name and r["impl"] == "stock"]
        if len(ran) < 2:
            continue
        slope, intercept = np.polyfit([r["n_train"] for r in ran], [r["peak_rss_gb"] for r in ran], 1)
        done = {r["n_train"] for r in ran}
        out += [
            {
                "model": model_name,
                "impl": "stock",
                "n_train": n,
                "peak_rss_gb": float(intercept + slope * n),
                "extrapolated": True,
            }
            for n in sizes
            if n not in done
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    parser.add_argument("--stock-max", type=int, default=2000)
    parser.add_argument("--models", nargs="+", default=["patchcore", "padim"])
    parser.add_argument("--ratio", type=float, default=0.01, help="PatchCore coreset ratio (both implementations)")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "IMPL", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]), args.ratio)))
        return
    rows = []
    for model_name in args.models:
        for impl in ("cxrad", "stock"):
            for n in args.sizes:
                if impl == "stock" and n > args.stock_max:
                    continue
                command = [sys.executable, __file__, "--child", model_name, impl, str(n), "--ratio", str(args.ratio)]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode:
                    print(done.stderr[-3000:], file=sys.stderr)
                    rows.append({"model": model_name, "impl": impl, "n_train": n, "error": done.returncode})
                    continue
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    rows += extrapolate(rows, args.sizes)
    path = write_json("memory", {"rows": rows, "image_size": IMAGE_SIZE, "backbone": "resnet18"}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
