"""Component rates for a paper estimate of a full NIH run (50k normal training films, 25k test films).

Measures on the current device (GPU if present): backbone forward images/s for PatchCore's layers, the
streaming coreset's two costs (the chunk-vs-coreset distance products and the greedy picks), anomalib's greedy
step cost (the same tensor operations as ``KCenterGreedy.update_distances``/``get_new_idx``), and exact
nearest-neighbour search images/s at a 1M-patch bank. ``estimate()`` turns the rates into hours. Needs only
torch and timm (the cxrad modules it uses are loaded by file path), so it runs on a bare GPU machine.

    python benchmarks/nih_estimate.py --out benchmarks/results/nih_estimate_gpu.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import timm
import torch

REPO = Path(__file__).resolve().parents[1]
BACKBONES = {
    "resnet18": ["layer2", "layer3"],
    "wide_resnet50_2": ["layer2", "layer3"],
    "tf_efficientnet_lite0": ["blocks.2", "blocks.4"],
}
NIH = {"train_films": 50_000, "test_films": 25_000, "image_size": 256, "patches_per_film": 32 * 32}


def load(name: str):  # noqa: ANN201 (a module)
    spec = importlib.util.spec_from_file_location(name, REPO / "cxrad" / "model" / "components" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, device: torch.device, repeats: int = 3) -> float:  # noqa: ANN001
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def backbone_rates(device: torch.device, batch: int) -> dict:
    rates = {}
    images = torch.randn(batch, 3, NIH["image_size"], NIH["image_size"], device=device)
    for name, layers in BACKBONES.items():
        names = [info["module"] for info in timm.create_model(name, pretrained=False).feature_info]
        indices = [names.index(layer) for layer in layers]
        model = timm.create_model(name, pretrained=False, features_only=True, out_indices=indices).to(device).eval()
        with torch.no_grad():
            seconds = timed(lambda m=model: m(images), device)
        rates[name] = batch / seconds
    return rates


def coreset_rates(device: torch.device, n_rows: int, dim: int, ratio: float) -> dict:
    coreset = load("coreset")
    gen = torch.Generator(device=device).manual_seed(0)
    rows = torch.randn(n_rows, dim, device=device, generator=gen)

    def stream_seconds(n: int) -> float:
        stream = coreset.StreamingCoreset(ratio, chunk_size=16_384, projection_dim=128)
        start = time.perf_counter()
        for part in rows[:n].split(16_384):
            stream.add(part)
        stream.finalize()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    stream_seconds(16_384)  # warm-up
    half, full = stream_seconds(n_rows // 2), stream_seconds(n_rows)
    # cost(N) = a*N (greedy picks inside chunks) + b*N^2 (distances to the coreset so far, which grows with N)
    quadratic = max(0.0, (full - 2 * half) / (n_rows**2 / 2))
    linear = max(0.0, (full - quadratic * n_rows**2) / n_rows)
    # anomalib's greedy step: a norm over the whole projected bank, a minimum and an argmax.
    features = torch.randn(n_rows, 128, device=device, generator=gen)
    min_d = torch.full((n_rows, 1), float("inf"), device=device)

    def stock_step() -> None:
        nonlocal min_d
        d = torch.linalg.norm(features - features[7], ord=2, dim=1, keepdim=True)
        min_d = torch.minimum(min_d, d)
        int(torch.max(min_d.squeeze(1), dim=0)[1])

    return {
        "rows": n_rows,
        "dim": dim,
        "ratio": ratio,
        "streaming_s": full,
        "streaming_half_s": half,
        "linear_s_per_row": linear,
        "quadratic_s_per_row2": quadratic,
        "stock_step_s": timed(stock_step, device, repeats=20),
    }


def knn_rate(device: torch.device, bank_rows: int, dim: int) -> float:
    knn = load("knn")
    bank = torch.randn(bank_rows, dim, device=device)
    queries = torch.randn(NIH["patches_per_film"], dim, device=device)
    return 1.0 / timed(lambda: knn.exact_knn(queries, bank, 1), device)


def estimate(result: dict, backbone: str = "wide_resnet50_2", ratio: float = 0.01, gpus: int = 1) -> dict:
    """Hours for the NIH run: extraction and scoring split over ``gpus``; the streaming coreset per rank."""
    n_patches = NIH["train_films"] * NIH["patches_per_film"]
    core = result["coreset"]
    # Each rank streams its shard: a*N + b*N^2 from the measured fit, the quadratic term (distances to a
    # coreset of ratio*N rows) scaled by the ratio; the ranks' coresets are then concatenated.
    rows = n_patches / gpus
    coreset_s = core["linear_s_per_row"] * rows + core["quadratic_s_per_row2"] * rows**2 * (ratio / core["ratio"])
    extract_s = NIH["train_films"] / result["backbone_images_per_s"][backbone] / gpus
    bank = ratio * n_patches
    knn_s = NIH["test_films"] / result["knn_images_per_s_1M"] * (bank / 1e6) / gpus
    test_extract_s = NIH["test_films"] / result["backbone_images_per_s"][backbone] / gpus
    stock_coreset_s = result["coreset"]["stock_step_s"] * (n_patches / core["rows"]) * ratio * n_patches
    return {
        "backbone": backbone,
        "gpus": gpus,
        "ratio": ratio,
        "extract_h": extract_s / 3600,
        "coreset_h": coreset_s / 3600,
        "test_h": (test_extract_s + knn_s) / 3600,
        "total_h": (extract_s + coreset_s + test_extract_s + knn_s) / 3600,
        "stock_coreset_h_single_device": stock_coreset_s / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000, help="patches in the coreset timing")
    parser.add_argument("--knn-bank", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nih_estimate.json")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 throughout: the rates of what cxrad runs by default
    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x{os.cpu_count()}",
        "torch": torch.__version__,
        "nih": NIH,
    }
    result["backbone_images_per_s"] = backbone_rates(device, args.batch)
    print(result["backbone_images_per_s"], flush=True)
    result["coreset"] = coreset_rates(device, args.rows, 384, 0.01)
    print(result["coreset"], flush=True)
    result["knn_images_per_s_1M"] = knn_rate(device, args.knn_bank, 384) * args.knn_bank / 1e6
    print("knn images/s scaled to a 1M bank:", result["knn_images_per_s_1M"], flush=True)
    result["estimates"] = [estimate(result, gpus=g) for g in (1, 8)] + [estimate(result, "resnet18", gpus=1)]
    for row in result["estimates"]:
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
