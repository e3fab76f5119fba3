"""Data throughput with and without the preprocessing cache on the full-resolution NIH PNGs.

Reads every film of ``../shared/data/nih_sample`` (17 PNGs, 1024 px and 512 px) through :class:`CxrDataset`
with ``conf/preprocessing/default.yaml`` in one process, and times three paths:

- ``no_cache``: decode + transform every time (``preprocessing.cache=false``);
- ``cold``: first pass over an empty cache folder (decode + transform + write the entry);
- ``warm``: later passes, served from the cache (read the entry, redraw and crop the mask).

The PNGs stay in the OS page cache between passes, so ``cold`` and ``no_cache`` time decoding, not disk reads;
on a first read from a real disk the cached path gains more. Writes ``benchmarks/results/data_cache.json``.

    .venv/bin/python benchmarks/data_cache.py                 # ~20 s on 2 busy CPU cores
    .venv/bin/python benchmarks/data_cache.py --passes 20 --out /tmp/data_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from cxrad.data.dataset import CxrDataset
from cxrad.data.metadata import normalise_metadata
from cxrad.data.nih import nih_table
from cxrad.data.table import complete_columns
from cxrad.preprocessing import PreprocessConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CXRAD_SHARED_DATA", REPO.parent / "shared" / "data"))


def nih_films(root: Path) -> pd.DataFrame:
    frame, _ = nih_table(root)
    return normalise_metadata(complete_columns(frame, str(root)))


def default_preprocessing(cache_dir: Path | None) -> PreprocessConfig:
    """``conf/preprocessing/default.yaml``, caching into ``cache_dir`` (off when ``None``)."""
    settings = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "preprocessing" / "default.yaml"))
    settings.update(cache=cache_dir is not None, cache_dir=str(cache_dir) if cache_dir else None)
    return PreprocessConfig(**settings)


def seconds_per_pass(dataset: CxrDataset) -> float:
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return time.perf_counter() - start


def measure(films: pd.DataFrame, passes: int, work: Path) -> dict[str, list[float]]:
    """Seconds per pass of each path; every ``cold`` pass starts from its own empty cache folder."""
    plain = CxrDataset(films, default_preprocessing(None))
    seconds_per_pass(plain)  # first calls (imports, OpenCV/albumentations set-up) out of the timings
    no_cache = [seconds_per_pass(plain) for _ in range(passes)]
    cold = [seconds_per_pass(CxrDataset(films, default_preprocessing(work / f"cold{i}"))) for i in range(passes)]
    warm_set = CxrDataset(films, default_preprocessing(work / "cold0"))  # filled by the first cold pass
    warm = [seconds_per_pass(warm_set) for _ in range(passes)]
    return {"no_cache": no_cache, "cold": cold, "warm": warm}


def summarise(films: pd.DataFrame, timings: dict[str, list[float]], work: Path) -> dict:
    per_second = {name: len(films) * len(runs) / sum(runs) for name, runs in timings.items()}
    entries = list((work / "cold0").rglob("*.npz"))
    return {
        "films": len(films),
        "passes": len(timings["warm"]),
        "images_per_second": {name: round(value, 1) for name, value in per_second.items()},
        "ms_per_image": {name: round(1000 / value, 2) for name, value in per_second.items()},
        "warm_over_cold": round(per_second["warm"] / per_second["cold"], 1),
        "warm_over_no_cache": round(per_second["warm"] / per_second["no_cache"], 1),
        "png_kb_per_film": round(sum(Path(p).stat().st_size for p in films.image_path) / len(films) / 1024, 1),
        "cache_kb_per_film": round(sum(p.stat().st_size for p in entries) / len(entries) / 1024, 1),
        "preprocessing": {k: v for k, v in vars(default_preprocessing(None)).items() if not k.startswith("cache")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }


def print_table(result: dict) -> None:
    print(f"{result['films']} NIH films x {result['passes']} passes, preprocessing {result['preprocessing']}")
    print(f"{'path':<10}{'images/s':>10}{'ms/image':>10}")
    for name, rate in result["images_per_second"].items():
        print(f"{name:<10}{rate:>10.1f}{result['ms_per_image'][name]:>10.2f}")
    print(f"warm / cold: {result['warm_over_cold']}x, warm / no cache: {result['warm_over_no_cache']}x")
    print(f"on disk per film: PNG {result['png_kb_per_film']} KB, cache entry {result['cache_kb_per_film']} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "nih_sample", help="NIH folder with PNGs")
    parser.add_argument("--passes", type=int, default=5, help="timed passes per path (default 5)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "data_cache.json")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"--data {args.data} does not exist; point it at ../shared/data/nih_sample (CXRAD_SHARED_DATA)")
    films = nih_films(args.data)
    with tempfile.TemporaryDirectory(prefix="cxrad-bench-cache-") as work:
        result = summarise(films, measure(films, args.passes, Path(work)), Path(work))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
