"""Colour spaces, dithering and transparency: kmquant side by side with pngquant.

    python benchmarks/perception.py spaces ../shared/corpus/photos      # which space suits what
    python benchmarks/perception.py dither ../shared/corpus/photos      # dithering on, vs pngquant
    python benchmarks/perception.py alpha ../shared/corpus/alpha        # transparency, vs pngquant

Metrics come from kmquant.metrics.quality_report: PSNR, SSIM and mean CIEDE2000, for RGBA
images composited over black and over white (the worse of the two). pngquant runs at its
defaults (dithering on) when installed; otherwise only kmquant's figures are printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import kmquant
from kmquant import metrics
from kmquant.colorspace import SPACES, alpha_classes


def images_in(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.png"))


def pngquant(path: Path, k: int, *extra: str) -> tuple[bytes, float]:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "out.png"
        started = time.perf_counter()
        subprocess.run(
            ["pngquant", *extra, "--force", "--output", str(target), str(k), str(path)],
            check=True,
            capture_output=True,
        )
        return target.read_bytes(), time.perf_counter() - started


def row(name: str, report: dict, n_bytes: int, seconds: float) -> str:
    return (
        f"| {name} | {report['psnr']:.2f} | {report['ssim']:.4f} | {report['delta_e']:.3f} | "
        f"{n_bytes:,} | {seconds:.3f} |"
    )


HEADER = (
    "| image / method | PSNR dB | SSIM | mean dE00 | bytes | seconds |\n|---|---|---|---|---|---|"
)


def spaces(paths: list[Path], ks: list[int]) -> None:
    for k in ks:
        print(f"\n## spaces, K = {k}, no dithering (means over {len(paths)} images)\n")
        print("| space | PSNR dB | SSIM | mean dE00 | p95 dE00 |\n|---|---|---|---|---|")
        for space in SPACES:
            reports = []
            for path in paths:
                image = kmquant.read_image(path)
                reports.append(
                    metrics.quality_report(
                        image, kmquant.quantize(image, k, space=space, rng=0).to_image()
                    )
                )
            mean = {key: float(np.mean([r[key] for r in reports])) for key in reports[0]}
            print(
                f"| {space} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['delta_e']:.3f} |"
                f" {mean['delta_e_p95']:.3f} |"
            )


def compare(paths: list[Path], ks: list[int], dither: str, check_alpha: bool) -> None:
    have_pngquant = shutil.which("pngquant") is not None
    if not have_pngquant:
        print("pngquant not installed (apt-get install pngquant): kmquant only")
    for k in ks:
        print(f"\n## K = {k}, kmquant --dither {dither} vs pngquant defaults\n")
        print(HEADER)
        wins = {"ssim": 0, "delta_e": 0, "psnr": 0}
        sizes = {"kmquant": [], "pngquant": []}
        times = {"dithered": 0.0, "plain": 0.0}
        for path in paths:
            image = kmquant.read_image(path)
            started = time.perf_counter()
            result = kmquant.quantize(image, k, dither=dither, rng=0)
            seconds = time.perf_counter() - started
            if dither != "none":
                # Medians of 3 runs each, alternating, for the dithering-cost ratio.
                runs: dict[str, list[float]] = {"dithered": [], "plain": []}
                for _ in range(3):
                    for name, mode in (("dithered", dither), ("plain", "none")):
                        started = time.perf_counter()
                        kmquant.quantize(image, k, dither=mode, rng=0)
                        runs[name].append(time.perf_counter() - started)
                for name in times:
                    times[name] += statistics.median(runs[name])
            data = kmquant.encode_png(result)
            ours = metrics.quality_report(image, result.to_image())
            print(row(f"{path.name} kmquant", ours, len(data), seconds))
            sizes["kmquant"].append(len(data))
            if check_alpha and image.shape[2] == 4:
                changed = int(
                    (alpha_classes(image[..., 3]) != alpha_classes(result.to_image()[..., 3])).sum()
                )
                print(f"| {path.name} alpha-class changes | {changed} | | | | |")
            if have_pngquant:
                peer_bytes, peer_seconds = pngquant(path, k)
                peer_image = kmquant.read_image(peer_bytes)
                if image.shape[2] == 3:
                    peer_image = peer_image[..., :3]
                theirs = metrics.quality_report(image, peer_image)
                print(row(f"{path.name} pngquant", theirs, len(peer_bytes), peer_seconds))
                sizes["pngquant"].append(len(peer_bytes))
                wins["ssim"] += ours["ssim"] >= theirs["ssim"]
                wins["delta_e"] += ours["delta_e"] <= theirs["delta_e"]
                wins["psnr"] += ours["psnr"] >= theirs["psnr"]
        if dither != "none":
            print(
                f"\nkmquant time with --dither {dither} / without: "
                f"{times['dithered'] / times['plain']:.2f}x (sum over images of medians of 3 runs)"
            )
        if have_pngquant:
            print(
                f"\nkmquant at least as good as pngquant on {wins['ssim']}/{len(paths)} images "
                f"for SSIM, {wins['delta_e']}/{len(paths)} for mean dE00, {wins['psnr']}/"
                f"{len(paths)} for PSNR; mean bytes kmquant {np.mean(sizes['kmquant']):,.0f}, "
                f"pngquant {np.mean(sizes['pngquant']):,.0f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["spaces", "dither", "alpha"])
    parser.add_argument("folder")
    parser.add_argument("-k", nargs="+", type=int, default=[16, 64])
    args = parser.parse_args()
    paths = images_in(args.folder)
    kmquant.quantize(kmquant.read_image(paths[0])[:32, :32], 4, dither="floyd-steinberg")
    if args.what == "spaces":
        spaces(paths, args.k)
    elif args.what == "dither":
        compare(paths, args.k, "floyd-steinberg", check_alpha=False)
    else:
        compare(paths, args.k, "none", check_alpha=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
