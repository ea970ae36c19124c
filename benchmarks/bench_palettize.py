"""The palettizer's k-means against scikit-learn, and accuracy before/after on the default model.

    .venv/bin/python -m benchmarks.bench_palettize [--model timm:vit_base_patch16_224:random]
        [--tensors blocks.0.,blocks.11.,patch_embed] [--clusters 64] [--whole-model] [--accuracy]

Part 1 (always): for each selected weight tensor, in ONE run and side by side, times
``pipeline.palettize.kmeans1d.kmeans_1d`` (exact 1-D DP + polish, single-threaded numpy),
the same module's Lloyd (kmeans++ start), and scikit-learn ``KMeans(n_clusters, n_init=1)``
(Lloyd/Elkan in C with OpenMP over every core it sees; fed float64 by default, ``--sklearn-dtype``),
and prints the time ratio and the ratio
of squared errors (ours / sklearn; below 1 = ours is better). Squared errors are recomputed in
float64 for every method from its labels and centroids. ``--whole-model`` also times
``palettize()`` over every Linear/Conv2d weight of the model (no sklearn there).

Part 2 (``--accuracy``): top-1 accuracy of the default model on its test split, dense and
palettized at 16, 32, 64 and 128 clusters (per tensor, and per-channel int8 grid).

Host CPU figures; nothing here is a test. The machine, cores and load average are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
            f"load average {load[0]:.2f} at start, numpy {np.__version__}")


def _sse(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    d = x.astype(np.float64) - np.asarray(centroids, dtype=np.float64).ravel()[labels]
    return float(np.square(d).sum())


def bench_kmeans(model_source: str, prefixes: list[str], k: int, whole_model: bool, sk_dtype: str) -> None:
    import sklearn
    from sklearn.cluster import KMeans

    from pipeline.palettize import PalettizeConfig, palettize, select_weights
    from pipeline.palettize.kmeans1d import kmeans_1d
    from pipeline.sources import load_model

    loaded = load_model(model_source)
    cfg = PalettizeConfig(clusters=k)
    chosen, _ = select_weights(loaded.module, cfg)
    chosen = [(n, p) for n, p in chosen if p.numel() >= cfg.weight_threshold]
    picked = [(n, p) for n, p in chosen if any(n.startswith(pre) for pre in prefixes)] if prefixes else chosen
    print(f"# k-means at {k} clusters on {model_source}: {len(picked)} of {len(chosen)} weight tensors")
    print(f"# machine: {_machine()}; scikit-learn {sklearn.__version__} on {sk_dtype} input")
    print(f"{'tensor':34s} {'values':>9s} {'ours s':>8s} {'lloyd s':>8s} {'sklearn s':>9s} "
          f"{'speedup':>8s} {'SSE ours/sk':>11s} {'SSE lloyd/sk':>12s}")
    tot = {"ours": 0.0, "lloyd": 0.0, "sk": 0.0, "sse_ours": 0.0, "sse_lloyd": 0.0, "sse_sk": 0.0}
    for name, param in picked:
        x = param.detach().float().numpy().ravel()
        t0 = time.perf_counter()
        ours = kmeans_1d(x, k)
        t1 = time.perf_counter()
        lloyd = kmeans_1d(x, k, algorithm="lloyd", init="kmeans++")
        t2 = time.perf_counter()
        sk = KMeans(n_clusters=k, n_init=1, random_state=0).fit(x.reshape(-1, 1).astype(sk_dtype))
        t3 = time.perf_counter()
        s_ours, s_lloyd = _sse(x, ours.centroids, ours.labels), _sse(x, lloyd.centroids, lloyd.labels)
        s_sk = _sse(x, sk.cluster_centers_, sk.labels_)
        for key, val in (("ours", t1 - t0), ("lloyd", t2 - t1), ("sk", t3 - t2), ("sse_ours", s_ours),
                         ("sse_lloyd", s_lloyd), ("sse_sk", s_sk)):
            tot[key] += val
        print(f"{name:34s} {x.size:9d} {t1 - t0:8.3f} {t2 - t1:8.3f} {t3 - t2:9.3f} "
              f"{(t3 - t2) / (t1 - t0):7.1f}x {s_ours / s_sk:11.5f} {s_lloyd / s_sk:12.5f}")
    print(f"{'TOTAL':34s} {'':9s} {tot['ours']:8.3f} {tot['lloyd']:8.3f} {tot['sk']:9.3f} "
          f"{tot['sk'] / tot['ours']:7.1f}x {tot['sse_ours'] / tot['sse_sk']:11.5f} "
          f"{tot['sse_lloyd'] / tot['sse_sk']:12.5f}")
    if whole_model:
        t0 = time.perf_counter()
        res = palettize(loaded.module, cfg)
        dt = time.perf_counter() - t0
        totals = res.report.totals()
        print(f"# palettize() on the whole model: {totals['tensors_clustered']} tensors, "
              f"{totals['params_clustered'] / 1e6:.1f} M weights in {dt:.1f} s "
              f"(k-means, decode, report and model copy included); "
              f"packed {totals['compression_packed']}x smaller, SQNR {totals['sqnr_db']} dB")


def bench_accuracy(clusters: list[int]) -> None:
    from pipeline.data import load_default_dataset
    from pipeline.evaluate import predict_logits
    from pipeline.palettize import PalettizeConfig, bits_per_weight, palettize
    from pipeline.sources import load_model

    loaded = load_model("default")
    x, y = load_default_dataset("test")
    dense_logits = predict_logits(loaded.module, x)
    dense = float((dense_logits.argmax(1) == y).mean())
    print(f"# default model, test split ({len(y)} images): dense top-1 {dense:.4f}")
    print(f"{'clusters':>8s} {'mode':>18s} {'bits/w':>7s} {'top-1':>7s} {'delta pts':>9s} {'agree':>7s} {'SQNR dB':>8s}")
    for k in clusters:
        for label, cfg in (("per_tensor", PalettizeConfig(clusters=k)),
                           ("int8_grid per-tensor", PalettizeConfig(clusters=k, int8_grid=True))):
            res = palettize(loaded.module, cfg)
            logits = predict_logits(res.model, x)
            acc = float((logits.argmax(1) == y).mean())
            agree = float((logits.argmax(1) == dense_logits.argmax(1)).mean())
            sq = res.report.totals()["sqnr_db"]
            print(f"{k:8d} {label:>18s} {bits_per_weight(res.palettes):7.3f} {acc:7.4f} "
                  f"{100 * (acc - dense):+9.2f} {agree:7.4f} {'exact' if sq is None else f'{sq:.2f}':>8s}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="timm:vit_base_patch16_224:random")
    p.add_argument("--tensors", default="blocks.0.,blocks.11.,patch_embed",
                   help="comma-separated name prefixes of the tensors to compare ('' = all: slow for sklearn)")
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--whole-model", action="store_true", help="also time palettize() on every tensor")
    p.add_argument("--accuracy", action="store_true", help="accuracy at 16/32/64/128 clusters, default model")
    p.add_argument("--skip-kmeans", action="store_true", help="only the accuracy part")
    p.add_argument("--sklearn-dtype", choices=["float64", "float32"], default="float64",
                   help="what scikit-learn is fed (float64: its most accurate, the conservative baseline)")
    args = p.parse_args(argv)
    if not args.skip_kmeans:
        prefixes = [t for t in args.tensors.split(",") if t]
        bench_kmeans(args.model, prefixes, args.clusters, args.whole_model, args.sklearn_dtype)
    if args.accuracy:
        bench_accuracy([16, 32, 64, 128])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
