"""Patient bootstrap cost: every metric of :func:`cxrad.metrics.bootstrap.bootstrap_metrics` on a synthetic table.

Default: 10,000 films of 3,000 patients, 1,000 resamples; also times one :func:`paired_difference`.

    .venv/bin/python benchmarks/bootstrap.py
    .venv/bin/python benchmarks/bootstrap.py --films 50000 --patients 15000 --boot 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from cxrad.metrics.bootstrap import bootstrap_metrics, paired_difference


def synthetic_predictions(n_films: int, n_patients: int, seed: int = 0) -> pd.DataFrame:
    """Films with overlapping classes, mixed views (some unknown), nodules among the abnormal, rounded scores."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_films)
    findings = rng.choice(["Nodule", "Effusion|Nodule", "Effusion", "Mass"], n_films)
    return pd.DataFrame(
        {
            "image_path": [f"film{i}.png" for i in range(n_films)],
            "patient_id": [f"p{i}" for i in rng.integers(0, n_patients, n_films)],
            "label": labels,
            "score": np.round(rng.normal(size=n_films) + labels, 3),  # rounded: ties, as in real scores
            "view": rng.choice(["PA", "AP", "unknown"], n_films, p=[0.6, 0.35, 0.05]),
            "finding_labels": np.where(labels == 1, findings, "No Finding"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=3_000)
    parser.add_argument("--boot", type=int, default=1_000)
    args = parser.parse_args()
    frame = synthetic_predictions(args.films, args.patients)
    cuts = np.full(len(frame), 0.5)
    start = time.perf_counter()
    result = bootstrap_metrics(frame, cuts, n_boot=args.boot)
    seconds = time.perf_counter() - start
    patients = result["_bootstrap"]["n_patients"]
    print(f"bootstrap_metrics: {args.films} films, {patients} patients, {args.boot} resamples: {seconds:.2f} s")
    other = frame.assign(score=frame["score"] + 0.2 * frame["label"])
    start = time.perf_counter()
    paired_difference(other, frame, "image_auroc", n_boot=args.boot)
    print(f"paired_difference (image_auroc): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
