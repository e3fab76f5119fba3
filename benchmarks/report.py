"""Markdown tables of the benchmark results in ``benchmarks/results/`` (what the README's performance section shows).

.venv/bin/python benchmarks/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def patchcore_fit(result: dict) -> list[str]:
    lines = [
        "| films | patches | stock fit s | cxrad fit s | speed-up | stock AUROC | cxrad AUROC | difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        stock = f"{r['stock_fit_s']:.0f}" + (" (extrapolated)" if r["stock_extrapolated"] else "")
        lines.append(
            f"| {r['n_train']} | {r['bank_patches']} | {stock} | {r['cxrad_fit_s']:.1f} | {r['speedup']:.0f}x | "
            f"{_fmt(r['stock_auroc'])} | {_fmt(r['cxrad_auroc'])} | {_fmt(r.get('auroc_difference'), 3)} |"
        )
    return lines


def memory(result: dict) -> list[str]:
    sizes = sorted({r["n_train"] for r in result["rows"]})
    lines = [
        "| model | implementation | " + " | ".join(f"{n} films" for n in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for model in ("patchcore", "padim"):
        for impl in ("cxrad", "stock"):
            cells = []
            for n in sizes:
                row = next(
                    (r for r in result["rows"] if (r["model"], r["impl"], r["n_train"]) == (model, impl, n)), None
                )
                if row is None or "peak_rss_gb" not in row:
                    cells.append("n/a")
                else:
                    cells.append(f"{row['peak_rss_gb']:.2f}" + (" (extrap.)" if row.get("extrapolated") else ""))
            lines.append(f"| {model} | {impl} | " + " | ".join(cells) + " |")
    return lines


def knn(result: dict) -> list[str]:
    lines = [
        "| bank patches | exact img/s | IVF img/s | IVF build s | IVF recall@1 | IVF score error | backbone img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['bank']:,} | {r['exact_images_per_s']:.2f} | {r['ivf_images_per_s']:.2f} | {r['ivf_build_s']:.1f} | "
            f"{r['ivf_recall_at_1']:.3f} | {r['ivf_image_score_rel_error']:.4f} | {r['backbone_images_per_s']:.1f} |"
        )
    return lines


def data_cache(result: dict) -> list[str]:
    rate = result["images_per_second"]
    return [
        "| path | films/s | ms/film |",
        "|---|---|---|",
        *(f"| {k} | {rate[k]:.1f} | {result['ms_per_image'][k]:.2f} |" for k in ("no_cache", "cold", "warm")),
        f"| warm / cold | {result['warm_over_cold']:.1f}x | |",
    ]


def main() -> None:
    for name, table in (("patchcore_fit", patchcore_fit), ("memory", memory), ("knn", knn), ("data_cache", data_cache)):
        result = _load(name)
        print(f"\n{name} (peak RSS in GB)" if name == "memory" else f"\n{name}")
        print("\n".join(table(result)) if result else "(not run)")


if __name__ == "__main__":
    main()
