"""Markdown tables and target checks from the JSON that compare.py writes.

    python benchmarks/compare.py ../shared/corpus/photos ../shared/corpus/large --json out.json
    python benchmarks/summarize.py out.json --only kodim monarch tulips   # the photos' table
    python benchmarks/summarize.py all.json rerun.json      # rerun rows replace the same rows

Prints, per K: mean MSE, PSNR of the mean MSE, median-of-runs seconds averaged over images,
mean bytes, and the ratios kmquant / peer; then the engine issue's quality and speed targets,
each marked met or not.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

REFERENCE = "sklearn-unique-n10 (ref)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "json", type=Path, nargs="+", help="later files replace the same (K, image, method) rows"
    )
    parser.add_argument("--only", nargs="*", help="image name prefixes to keep")
    args = parser.parse_args()
    data: dict = {}
    for path in args.json:
        for k, rows in json.loads(path.read_text()).items():
            data.setdefault(k, {}).update(rows)
    for k, rows in data.items():
        images = sorted({key.split("|")[0] for key in rows})
        if args.only:
            images = [i for i in images if Path(i).name.startswith(tuple(args.only))]
        methods = list(dict.fromkeys(key.split("|")[1] for key in rows))
        mean = {
            m: {
                f: float(np.mean([rows[f"{i}|{m}"][f] for i in images]))
                for f in ("mse", "seconds", "bytes")
            }
            for m in methods
        }
        ours = mean["kmquant"]
        print(f"\n**K = {k}** ({len(images)} images)\n")
        print(
            "| method | mean MSE | PSNR of mean MSE | mean seconds | mean bytes | "
            "time kmquant/peer | MSE kmquant/peer | bytes kmquant/peer |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for m in methods:
            v = mean[m]
            print(
                f"| {m} | {v['mse']:.3f} | {10 * math.log10(255**2 / v['mse']):.2f} dB | "
                f"{v['seconds']:.4f} | {v['bytes']:,.0f} | {ours['seconds'] / v['seconds']:.3f} | "
                f"{ours['mse'] / v['mse']:.4f} | {ours['bytes'] / v['bytes']:.3f} |"
            )
        peers = [m for m in methods if not m.startswith("kmquant") and m != REFERENCE]
        worst = max(
            rows[f"{i}|kmquant"]["mse"] / min(rows[f"{i}|{p}"]["mse"] for p in peers)
            for i in images
        )
        losing = [
            Path(i).name
            for i in images
            if rows[f"{i}|kmquant"]["mse"] > min(rows[f"{i}|{p}"]["mse"] for p in peers)
        ]
        checks = [
            (
                "MSE <= every non-reference peer on every image",
                worst <= 1.0,
                f"worst ratio {worst:.4f}" + (f" ({', '.join(losing)})" if losing else ""),
            ),
            (
                "mean MSE <= 1.005 x reference",
                ours["mse"] <= 1.005 * mean[REFERENCE]["mse"],
                f"{ours['mse'] / mean[REFERENCE]['mse']:.4f}",
            ),
        ]
        if "libimagequant" in mean:
            checks.append(
                (
                    "time <= 0.5 x libimagequant",
                    ours["seconds"] <= 0.5 * mean["libimagequant"]["seconds"],
                    f"{ours['seconds'] / mean['libimagequant']['seconds']:.2f}",
                )
            )
            checks.append(
                (
                    "mean bytes <= libimagequant",
                    ours["bytes"] <= mean["libimagequant"]["bytes"],
                    f"{ours['bytes'] / mean['libimagequant']['bytes']:.3f}",
                )
            )
        if "pngquant-speed1" in mean:
            checks.append(
                (
                    "time <= 0.5 x pngquant --speed 1",
                    ours["seconds"] <= 0.5 * mean["pngquant-speed1"]["seconds"],
                    f"{ours['seconds'] / mean['pngquant-speed1']['seconds']:.2f}",
                )
            )
        if "sklearn-pixels-n1" in mean:
            speedup = mean["sklearn-pixels-n1"]["seconds"] / ours["seconds"]
            checks.append(
                (
                    ">= 50 x faster than sklearn KMeans(n_init=1) on pixels",
                    speedup >= 50,
                    f"{speedup:.1f}x",
                )
            )
        if "kmquant-fast" in mean and "pillow-fastoctree" in mean:
            fast, octree = mean["kmquant-fast"], mean["pillow-fastoctree"]
            checks.append(
                (
                    "--speed fast <= 2 x FASTOCTREE time",
                    fast["seconds"] <= 2 * octree["seconds"],
                    f"{fast['seconds'] / octree['seconds']:.1f}x",
                )
            )
            checks.append(
                (
                    "--speed fast MSE >= 40% below FASTOCTREE",
                    fast["mse"] <= 0.6 * octree["mse"],
                    f"{100 * (1 - fast['mse'] / octree['mse']):.0f}% lower",
                )
            )
        print()
        for name, met, value in checks:
            print(f"- {'met' if met else 'NOT met'}: {name}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
