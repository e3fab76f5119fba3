"""PatchCore fit time and AUROC: cxrad (streaming greedy coreset) vs stock anomalib, same films, same settings.

Both models get the same backbone and weights (EfficientNet-Lite0, ImageNet, offline), layers, 3x3 local
aggregation, coreset ratio 0.1 and 9 neighbours; they differ in the coreset (cxrad's streaming greedy vs
anomalib's ``KCenterGreedy``) and the nearest-neighbour search. Where stock's greedy would run longer than
``--stock-max-selections`` picks, its first picks are timed and the rest extrapolated linearly (each pick
costs the same: one pass over the bank), and no stock AUROC is reported for that size.

    .venv/bin/python benchmarks/patchcore_fit.py                  # 40 and 300 films at 256 px
    .venv/bin/python benchmarks/patchcore_fit.py --accelerator gpu --stock-max-selections 0   # stock in full
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import (
    backbone_config,
    compose_config,
    engine,
    fit_seconds,
    loader,
    synthetic_films,
    test_auroc,
    write_json,
)
from anomalib.models import Patchcore
from anomalib.models.components.sampling import KCenterGreedy

from cxrad.backbone import load_pretrained
from cxrad.model import build_patchcore
from cxrad.model.common import NO_ANOMALIB_POSTPROCESSING, pre_processor


class StockPatchcore(Patchcore):
    """anomalib's PatchCore; ``fit`` is its ``subsample_embedding`` with the coreset step timed."""

    max_selections: int = 0  # run in full up to this many picks (0: always)
    prefix_selections: int = 300  # picks timed before extrapolating

    def fit(self) -> None:
        entered = time.perf_counter()
        self._fit()
        self.coreset_wall = time.perf_counter() - entered  # what the Engine's fit actually spent here

    def _fit(self) -> None:
        bank = torch.vstack(self.model.embedding_store)
        self.model.embedding_store.clear()
        sampler = KCenterGreedy(embedding=bank, sampling_ratio=self.coreset_sampling_ratio)
        self.n_bank, n_select = len(bank), sampler.coreset_size
        start = time.perf_counter()
        if not self.max_selections or n_select <= self.max_selections:
            self.model.memory_bank = sampler.sample_coreset()
            self.coreset_seconds, self.extrapolated = time.perf_counter() - start, False
            return
        sampler.model.fit(bank)  # the random projection, done once per fit
        sampler.model.transform(bank)
        projection = time.perf_counter() - start
        sampler.coreset_size = self.prefix_selections
        start = time.perf_counter()
        sampler.select_coreset_idxs()  # projects again, then the first picks
        per_pick = (time.perf_counter() - start - projection) / self.prefix_selections
        self.coreset_seconds, self.extrapolated = projection + per_pick * n_select, True
        self.model.memory_bank = bank[:1]  # placeholder so the Engine finishes; never scored


def stock_patchcore(backbone, image_size: int, max_selections: int, prefix: int = 300) -> StockPatchcore:
    model = StockPatchcore(
        backbone=backbone.timm_name,
        layers=backbone.layers_for("patchcore"),
        pre_trained=False,
        coreset_sampling_ratio=0.1,
        num_neighbors=9,
        pre_processor=pre_processor(image_size, backbone),
        **NO_ANOMALIB_POSTPROCESSING,
    )
    load_pretrained(model.model.feature_extractor.feature_extractor, backbone)
    model.max_selections, model.prefix_selections = max_selections, prefix
    return model


def measure(n_train: int, args: argparse.Namespace, films, test, work: Path) -> dict:
    backbone = backbone_config(compose_config(f"backbone={args.backbone}"))
    train = loader(films[:n_train], args.image_size, shuffle=True)
    row = {"n_train": n_train, "image_size": args.image_size, "backbone": args.backbone}
    torch.manual_seed(0)  # stock's KCenterGreedy draws its first centre from the global RNG
    stock = stock_patchcore(backbone, args.image_size, args.stock_max_selections, args.stock_prefix)
    eng, collector = engine(work / f"stock{n_train}", args.accelerator)
    row["stock_fit_s"] = fit_seconds(eng, stock, train)
    row["stock_coreset_s"], row["stock_extrapolated"] = stock.coreset_seconds, stock.extrapolated
    row["stock_fit_s"] += stock.coreset_seconds - stock.coreset_wall  # extrapolated greedy in place of its prefix
    row["bank_patches"] = stock.n_bank
    row["stock_auroc"] = None if stock.extrapolated else test_auroc(eng, stock, test, collector)
    ours = build_patchcore(backbone, args.image_size, coreset_sampling_ratio=0.1, num_neighbors=9, patch_size=3)
    eng, collector = engine(work / f"cxrad{n_train}", args.accelerator)
    row["cxrad_fit_s"] = fit_seconds(eng, ours, train)
    row["cxrad_auroc"] = test_auroc(eng, ours, test, collector)
    row["speedup"] = row["stock_fit_s"] / row["cxrad_fit_s"]
    if row["stock_auroc"] is not None:
        row["auroc_difference"] = row["cxrad_auroc"] - row["stock_auroc"]
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 300])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--test-films", type=int, default=60, help="normal and as many abnormal test films")
    parser.add_argument("--stock-max-selections", type=int, default=5000, help="0 = run stock's greedy in full")
    parser.add_argument("--stock-prefix", type=int, default=300, help="picks timed when stock is extrapolated")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    frame = synthetic_films(max(args.sizes) + args.test_films, args.test_films, args.image_size)
    normals = frame[frame.label == 0]
    films = normals.iloc[: max(args.sizes)]
    test = loader(frame.drop(films.index), args.image_size)
    with tempfile.TemporaryDirectory() as work:
        rows = [measure(n, args, films, test, Path(work)) for n in args.sizes]
    path = write_json("patchcore_fit", {"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
