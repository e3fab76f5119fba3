"""Peak memory of fitting PatchCore and PaDiM vs the number of training films: cxrad (streaming) vs stock anomalib.

One fresh process per (model, implementation) fits on the largest size's synthetic films at 224 px with
resnet18 (random weights: memory does not depend on them) through the Engine, and stops at each smaller size
on the way (a checkpoint): there it builds the model exactly as the end of a fit of that many films would
(stock: stacks every stored embedding and runs its coreset / Gaussian fit; cxrad: finalizes a copy of the
streaming coreset / statistics) and records the peak resident memory since the previous checkpoint, read from
Linux's ``VmHWM`` and reset after each checkpoint (``/proc/self/clear_refs``, value 5), then frees that result and
streams on. The largest size is the Engine's own end of fit. A checkpoint's figure is therefore the peak of
streaming the films since the previous checkpoint plus building the model at this size; the streaming state only
grows, so that is the peak a fit of this many films reaches, without the earlier checkpoints' results (which a
never-decreasing ``ru_maxrss`` would carry into every later row). cxrad's PaDiM checkpoints hold one copy of the
accumulated outer products while finalizing (0.25 GB at 224 px), so those rows are conservative by that much; its
last row has no copy. Where ``/proc`` cannot be written, ``ru_maxrss`` is used and the figures only grow.

Stock anomalib stacks every embedding before fitting; above ``--stock-max`` films it is not run (it would need
more RAM than the machine has) and its peak is extrapolated linearly from the sizes it ran, marked as such.
Stock PatchCore's greedy is cut after its first ``STOCK_PICKS`` picks (its memory is the stacked and projected
bank; the greedy loop adds one float per patch), so its time is not reported here: see patchcore_fit.py.

    .venv/bin/python benchmarks/memory.py                              # 500, 1000, 2000, 5000 films
    .venv/bin/python benchmarks/memory.py --sizes 200 400 --stock-max 400
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import compose_config, engine, loader, peak_rss_gb, synthetic_films, write_json
from lightning.pytorch import Callback

IMAGE_SIZE = 224
BATCH_SIZE = 50  # divides every default size, so checkpoints fall on batch ends
STOCK_PICKS = 20


def _cxrad_patchcore_snapshot(module) -> None:  # noqa: ANN001
    """Finalize a copy of the streaming coreset (shares the stream's tensors; its own lists and generator)."""
    stream = module.coreset
    twin = copy.copy(stream)
    twin.pending, twin.kept, twin.kept_projected = list(stream.pending), list(stream.kept), list(stream.kept_projected)
    twin.generator = torch.Generator().set_state(stream.generator.get_state())
    bank = twin.finalize()
    del twin, bank


def _cxrad_padim_snapshot(module) -> None:  # noqa: ANN001
    """Finalize a copy of the streaming statistics (finalize works in place on the outer products)."""
    twin = copy.copy(module.statistics)
    twin.outer = module.statistics.outer.clone()
    mean, inv_covariance = twin.finalize()
    del twin, mean, inv_covariance


def _stock_patchcore_snapshot(module) -> None:  # noqa: ANN001
    """What stock's fit does: stack the stored embeddings (its fit then clears the store), project, start the greedy.

    The store is replaced by the one stacked tensor (same rows, so the fit streams on from it): as in stock's fit,
    the per-batch tensors are freed before the greedy, and the stacked bank is what the rest of the fit holds.
    """
    from anomalib.models.components.sampling import KCenterGreedy

    store = module.model.embedding_store
    bank = torch.vstack(store)
    store[:] = [bank]
    sampler = KCenterGreedy(embedding=bank, sampling_ratio=module.coreset_sampling_ratio)
    sampler.coreset_size = STOCK_PICKS
    sampler.select_coreset_idxs()
    del sampler, bank


def _stock_padim_snapshot(module) -> None:  # noqa: ANN001
    """Stock's fit: stack every embedding (its list is then dropped) and fit the Gaussians.

    The list is replaced by the one stacked tensor (same rows, so the fit streams on from it), as stock's fit
    replaces it before fitting the Gaussians.
    """
    bank = torch.vstack(module.model.memory_bank)
    module.model.memory_bank = [bank]
    module.model.gaussian.fit(bank)
    del bank


SNAPSHOTS: dict[tuple[str, str], Callable] = {
    ("patchcore", "cxrad"): _cxrad_patchcore_snapshot,
    ("padim", "cxrad"): _cxrad_padim_snapshot,
    ("patchcore", "stock"): _stock_patchcore_snapshot,
    ("padim", "stock"): _stock_padim_snapshot,
}


def _peak_since_reset_gb() -> float:
    """Peak resident memory since the last :func:`_reset_peak` (Linux ``VmHWM``), else since the start."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**20  # kB
    except (OSError, StopIteration):
        return peak_rss_gb()


def _reset_peak() -> None:
    """Set the peak (``VmHWM``) back to the current resident size (Linux: write 5 to ``/proc/self/clear_refs``)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc), so a checkpoint's freed result does not inflate later peaks."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: peaks may then include allocator slack
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Checkpoints(Callback):
    """At each size below the last, build the fitted model of the films seen so far and record peak RSS."""

    def __init__(self, sizes: list[int], snapshot: Callable) -> None:
        self.sizes, self.snapshot = set(sizes[:-1]), snapshot
        self.seen, self.rows, self.start = 0, [], time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.seen += len(batch.image)
        if self.seen in self.sizes:
            with torch.no_grad():
                self.snapshot(pl_module)
            self.rows.append(
                {"n_train": self.seen, "peak_rss_gb": _peak_since_reset_gb(), "fit_s": time.perf_counter() - self.start}
            )
            _release_freed_memory()
            _reset_peak()


def child(model_name: str, impl: str, sizes: list[int], ratio: float) -> list[dict]:
    from omegaconf import OmegaConf

    from cxrad.backbone import BackboneConfig
    from cxrad.model import build_padim, build_patchcore

    sizes = sorted(sizes)
    films = synthetic_films(sizes[-1], 0, IMAGE_SIZE)
    # Batches of 50 films make each stored stock embedding > 32 MB, so glibc maps it on its own and the figures
    # measure live memory; at 20 films they fell in the heap and fragmentation added ~1.5 GB to stock's peaks.
    train = loader(films, IMAGE_SIZE, batch_size=BATCH_SIZE, shuffle=True)
    backbone = BackboneConfig(
        **{**OmegaConf.to_container(compose_config("backbone=resnet18").backbone), "pretrained": False}
    )
    baseline = peak_rss_gb()
    _reset_peak()
    if model_name == "patchcore" and impl == "cxrad":
        model = build_patchcore(backbone, IMAGE_SIZE, coreset_sampling_ratio=ratio)
    elif model_name == "patchcore":
        from patchcore_fit import stock_patchcore

        model = stock_patchcore(backbone, IMAGE_SIZE, max_selections=STOCK_PICKS, prefix=STOCK_PICKS)
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
    checkpoints = Checkpoints(sizes, SNAPSHOTS[model_name, impl])
    with tempfile.TemporaryDirectory() as work:
        eng, _ = engine(Path(work), callbacks=(checkpoints,))
        start = time.perf_counter()
        eng.fit(model=model, train_dataloaders=train)
        seconds = time.perf_counter() - start
    rows = [*checkpoints.rows, {"n_train": sizes[-1], "peak_rss_gb": _peak_since_reset_gb(), "fit_s": seconds}]
    if len(rows) != len(sizes):  # a size that is not a multiple of the batch never hits a batch end
        msg = f"checkpoints at {[r['n_train'] for r in rows]}, asked for {sizes}: use multiples of {BATCH_SIZE}"
        raise ValueError(msg)
    common = {
        "model": model_name,
        "impl": impl,
        "rss_before_fit_gb": baseline,
        "coreset_ratio": ratio if model_name == "patchcore" else None,
    }
    return [{**common, **row, "checkpoint": row["n_train"] != sizes[-1]} for row in rows]


def extrapolate(rows: list[dict], sizes: list[int]) -> list[dict]:
    """Linear fit of stock's peak RSS over the sizes it ran, evaluated where it did not."""
    out = []
    for model_name in ("patchcore", "padim"):
        ran = [r for r in rows if r["model"] == model_name and r["impl"] == "stock" and "peak_rss_gb" in r]
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
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.sizes, args.ratio)))
        return
    rows = []
    for model_name in args.models:
        for impl in ("cxrad", "stock"):
            sizes = [n for n in args.sizes if impl == "cxrad" or n <= args.stock_max]
            if not sizes:
                continue
            command = [sys.executable, __file__, "--child", model_name, impl, "--ratio", str(args.ratio)]
            command += ["--sizes", *map(str, sizes)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                rows += [{"model": model_name, "impl": impl, "n_train": n, "error": done.returncode} for n in sizes]
                continue
            rows += json.loads(done.stdout.strip().splitlines()[-1])
            for row in rows[-len(sizes) :]:
                print(row, flush=True)
    rows += extrapolate(rows, args.sizes)
    path = write_json("memory", {"rows": rows, "image_size": IMAGE_SIZE, "backbone": "resnet18"}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
