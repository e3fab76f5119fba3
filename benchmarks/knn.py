"""PatchCore inference: nearest-neighbour search cost vs bank size, against the backbone's own forward rate.

The bank is real: patch embeddings (EfficientNet-Lite0, ImageNet, 3x3 aggregation, as PatchCore builds them)
of synthetic films, as many films as the largest bank needs; queries are the patches of other films. For each
bank size: images/s of exact blocked torch search and of FAISS IVF (``nlist = sqrt(N)``, ``nprobe`` 8), the IVF
build time, its recall of the true nearest patch and the relative error of the image score (max patch distance).
The backbone-only rate (the CPU's physical ceiling for PatchCore inference) is measured in the same process.

    .venv/bin/python benchmarks/knn.py                          # banks of 10k, 100k, 1M patches
    .venv/bin/python benchmarks/knn.py --banks 10000 100000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import torch
from _common import backbone_config, compose_config, loader, synthetic_films, write_json

from cxrad.model import build_patchcore
from cxrad.model.components.knn import BankSearch

IMAGE_SIZE = 256


def embeddings(model, films, batch_size: int = 16) -> tuple[torch.Tensor, float]:
    """``(films, patches, D)`` PatchCore embeddings and the backbone+aggregation images/s."""
    model.model.train()  # anomalib's PatchCore returns the embeddings in training mode
    out, seconds = [], 0.0
    with torch.no_grad():
        for batch in loader(films, IMAGE_SIZE, batch_size=batch_size):
            image = model.pre_processor.transform(batch.image)
            start = time.perf_counter()
            embedding = model.model(image)
            seconds += time.perf_counter() - start
            model.model.embedding_store.clear()
            out.append(embedding.reshape(len(image), -1, embedding.shape[-1]))
    stacked = torch.cat(out)
    return stacked, len(stacked) / seconds


def search_rate(search: BankSearch, queries: torch.Tensor, reference: torch.Tensor | None) -> dict:
    start = time.perf_counter()
    distances = torch.stack([search.search(film, 1)[0][:, 0] for film in queries])
    row = {"images_per_s": len(queries) / (time.perf_counter() - start)}
    if reference is not None:
        row["recall_at_1"] = float((distances - reference).abs().le(1e-3 * reference.clamp_min(1e-6)).float().mean())
        image_exact, image_approx = reference.max(1).values, distances.max(1).values
        row["image_score_rel_error"] = float(((image_approx - image_exact) / image_exact).abs().mean())
    return row, distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--banks", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--query-films", type=int, default=4)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cfg = compose_config()
    model = build_patchcore(backbone_config(cfg), IMAGE_SIZE)
    patches = (IMAGE_SIZE // 8) ** 2
    n_films = -(-max(args.banks) // patches) + args.query_films
    films = synthetic_films(n_films, 0, IMAGE_SIZE)
    feats, backbone_rate = embeddings(model, films)
    queries, pool = feats[: args.query_films], feats[args.query_films :].reshape(-1, feats.shape[-1])
    print(f"backbone + aggregation: {backbone_rate:.1f} images/s; {len(pool)} bank patches of dim {pool.shape[1]}")
    rows = []
    for size in args.banks:
        bank = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:size]].contiguous()
        exact, reference = search_rate(BankSearch(bank, "exact"), queries, None)
        start = time.perf_counter()
        ivf_search = BankSearch(bank, "ivf", nprobe=args.nprobe)
        build = time.perf_counter() - start
        ivf, _ = search_rate(ivf_search, queries, reference)
        row = {
            "bank": size,
            "exact_images_per_s": exact["images_per_s"],
            "ivf_images_per_s": ivf["images_per_s"],
            "ivf_build_s": build,
            "ivf_recall_at_1": ivf["recall_at_1"],
            "ivf_image_score_rel_error": ivf["image_score_rel_error"],
            "backbone_images_per_s": backbone_rate,
            "exact_knn_over_backbone_cost": backbone_rate / exact["images_per_s"],
            "ivf_knn_over_backbone_cost": backbone_rate / ivf["images_per_s"],
        }
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    payload = {
        "rows": rows,
        "dim": int(pool.shape[1]),
        "patches_per_image": patches,
        "nprobe": args.nprobe,
        "backbone": cfg.backbone.name,
        "image_size": IMAGE_SIZE,
        "threads": torch.get_num_threads(),
        "faiss_threads": int(faiss.omp_get_max_threads()),
    }
    print(f"wrote {write_json('knn', payload, args.out)}")


if __name__ == "__main__":
    main()
