"""kmquant against its peers, side by side, in one process.

For every image and every K, each method quantizes the image without dithering; the table
gives per-image MSE (over pixels and RGB channels, 0..255 scale), PSNR, seconds (median of
several runs) and output PNG bytes, then the means and the ratios kmquant / peer.

    python benchmarks/compare.py                         # bundled sample, K = 16 64 256
    python benchmarks/compare.py ../shared/corpus/photos -k 16 64 256 --markdown
    python benchmarks/compare.py ../shared/corpus/photos --only kmquant --seed 1 --json s1.json
        # kmquant with another seed; summarize.py all.json s1.json puts it beside the peers

Time is what each method spends turning pixels into a palette + indices (kmquant: histogram,
k-means and mapping every pixel; pngquant: its whole process, decode and encode included, as
it cannot be timed any other way). Bytes are each tool's own PNG where it writes one (Pillow,
imagequant through Pillow, pngquant) and kmquant's encoder for the k-means peers that have no
writer of their own. Peers that are not installed are listed and skipped.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

import kmquant
from kmquant.histogram import color_histogram
from kmquant.palette import centers_to_palette
from kmquant.quantize import QuantizedImage

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


@dataclass
class Output:
    """What one method produced: the quantized RGB image and its PNG bytes."""

    image: np.ndarray
    png_bytes: int


@dataclass
class Method:
    name: str
    run: Callable[[np.ndarray, int, Path], Output]  # timed inside: returns (Output, seconds)
    slow: bool = False


def _indexed_output(palette: np.ndarray, labels: np.ndarray) -> Output:
    result = QuantizedImage(
        palette=palette, labels=labels.astype(np.uint8), inertia=0.0, n_iter=0, n_input_colors=0
    )
    return Output(result.to_image(), len(kmquant.encode_png(result)))


def _pillow_output(indexed: Image.Image) -> Output:
    buffer = io.BytesIO()
    indexed.save(buffer, format="PNG", optimize=True)
    return Output(np.asarray(indexed.convert("RGB")), len(buffer.getvalue()))


# -------------------------------------------------------------------------------- methods


def run_kmquant(image, k, path, seed=0, **options):
    started = time.perf_counter()
    result = kmquant.quantize(image, k, rng=seed, **options)
    seconds = time.perf_counter() - started
    return Output(result.to_image(), len(kmquant.encode_png(result))), seconds


def run_sklearn_pixels(image, k, path):
    from sklearn.cluster import KMeans

    pixels = image.reshape(-1, 3).astype(np.float64)
    started = time.perf_counter()
    model = KMeans(k, n_init=1, random_state=0).fit(pixels)
    seconds = time.perf_counter() - started
    palette = centers_to_palette(model.cluster_centers_)
    return _indexed_output(palette, model.labels_.reshape(image.shape[:2])), seconds


def run_sklearn_unique(image, k, path):
    """The best-known reference for the k-means objective: 10 restarts on the histogram."""
    from sklearn.cluster import KMeans

    started = time.perf_counter()
    histogram = color_histogram(image)
    model = KMeans(k, n_init=10, random_state=0).fit(
        histogram.colors.astype(np.float64), sample_weight=histogram.counts
    )
    labels = model.labels_[histogram.inverse].reshape(image.shape[:2])
    seconds = time.perf_counter() - started
    return _indexed_output(centers_to_palette(model.cluster_centers_), labels), seconds


def run_pillow(method_name):
    def run(image, k, path):
        method = getattr(Image.Quantize, method_name)
        source = Image.fromarray(image)
        started = time.perf_counter()
        kmeans = 1 if method_name == "MEDIANCUT" else 0
        indexed = source.quantize(k, method=method, kmeans=kmeans, dither=Image.Dither.NONE)
        seconds = time.perf_counter() - started
        return _pillow_output(indexed), seconds

    return run


def run_imagequant(image, k, path):
    import imagequant

    height, width = image.shape[:2]
    rgba = np.dstack([image, np.full((height, width), 255, np.uint8)]).tobytes()
    started = time.perf_counter()
    indices, palette = imagequant.quantize_raw_rgba_bytes(
        rgba, width, height, dithering_level=0.0, max_colors=k
    )
    seconds = time.perf_counter() - started
    palette_rgb = np.array(palette, dtype=np.uint8).reshape(-1, 4)[:, :3]
    labels = np.frombuffer(indices, dtype=np.uint8).reshape(height, width)
    return _indexed_output(palette_rgb, labels), seconds


def run_pngquant(speed):
    def run(image, k, path):
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "in.png"
            Image.fromarray(image).save(source, compress_level=1)
            target = Path(folder) / "out.png"
            command = ["pngquant", "--nofs", "--force", "--output", str(target), str(k)]
            if speed is not None:
                command[1:1] = ["--speed", str(speed)]
            started = time.perf_counter()
            subprocess.run([*command, str(source)], check=True, capture_output=True)
            seconds = time.perf_counter() - started
            data = target.read_bytes()
        return Output(kmquant.read_image(data)[:, :, :3], len(data)), seconds

    return run


def run_faiss(image, k, path):
    import faiss

    pixels = np.ascontiguousarray(image.reshape(-1, 3), dtype=np.float32)
    started = time.perf_counter()
    model = faiss.Kmeans(3, k, niter=25, seed=1, verbose=False)
    model.train(pixels)
    _, labels = model.index.search(pixels, 1)
    seconds = time.perf_counter() - started
    palette = centers_to_palette(model.centroids)
    return _indexed_output(palette, labels.reshape(image.shape[:2])), seconds


def available_methods(include_slow: bool, seed: int = 0) -> tuple[list[Method], list[str]]:
    methods = [
        Method("kmquant", lambda image, k, path: run_kmquant(image, k, path, seed)),
        Method(
            "kmquant-fast",
            lambda image, k, path: run_kmquant(image, k, path, seed, speed="fast"),
        ),
    ]
    missing = []
    try:
        import sklearn  # noqa: F401

        methods.append(Method("sklearn-pixels-n1", run_sklearn_pixels, slow=True))
        methods.append(Method("sklearn-unique-n10 (ref)", run_sklearn_unique, slow=True))
    except ImportError:
        missing.append("scikit-learn (pip install scikit-learn)")
    methods.append(Method("pillow-mediancut-km1", run_pillow("MEDIANCUT")))
    methods.append(Method("pillow-fastoctree", run_pillow("FASTOCTREE")))
    try:
        import imagequant  # noqa: F401

        methods.append(Method("libimagequant", run_imagequant))
    except ImportError:
        missing.append("libimagequant (pip install imagequant)")
    if shutil.which("pngquant"):
        methods.append(Method("pngquant-speed1", run_pngquant(1)))
        methods.append(Method("pngquant-default", run_pngquant(None)))
    else:
        missing.append("pngquant (apt-get install pngquant)")
    try:
        import faiss  # noqa: F401

        methods.append(Method("faiss", run_faiss))
    except ImportError:
        missing.append("faiss (pip install faiss-cpu)")
    if not include_slow:
        methods = [method for method in methods if not method.slow]
    return methods, missing


# -------------------------------------------------------------------------------- driver


def list_images(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(path)
    return paths


def measure(
    method: Method, image: np.ndarray, k: int, path: Path, repeat: int, budget: float
) -> dict:
    times = []
    output = None
    spent = 0.0
    for _ in range(repeat):
        output, seconds = method.run(image, k, path)
        times.append(seconds)
        spent += seconds
        if spent > budget:
            break
    assert output is not None
    error = float(np.mean((image.astype(np.float64) - output.image.astype(np.float64)) ** 2))
    peak = float("inf") if error == 0 else 10 * np.log10(255.0**2 / error)
    return {
        "mse": error,
        "psnr": peak,
        "seconds": statistics.median(times),
        "bytes": output.png_bytes,
        "runs": len(times),
    }


def print_table(k: int, names: list[str], images: list[Path], rows: dict, markdown: bool) -> None:
    print(f"\n## K = {k}\n")
    header = ["image"] + [f"{name}" for name in names]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    for path in images:
        cells = [path.name]
        for name in names:
            row = rows[(path.name, name)]
            cells.append(
                f"{row['mse']:.2f} / {row['psnr']:.2f} dB / {row['seconds']:.3f} s /"
                f" {row['bytes'] / 1000:.0f} kB"
            )
        print(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
    means = {
        name: {
            field: float(np.mean([rows[(path.name, name)][field] for path in images]))
            for field in ("mse", "seconds", "bytes")
        }
        for name in names
    }
    print("\nmeans (MSE / seconds / bytes) and ratios kmquant / peer:\n")
    if markdown:
        print("| method | mean MSE | mean s | mean bytes | time ratio | MSE ratio | bytes ratio |")
        print("|---|---|---|---|---|---|---|")
    ours = means["kmquant"]
    for name in names:
        mean = means[name]
        cells = [
            name,
            f"{mean['mse']:.3f}",
            f"{mean['seconds']:.4f}",
            f"{mean['bytes']:.0f}",
            f"{ours['seconds'] / mean['seconds']:.3f}",
            f"{ours['mse'] / mean['mse']:.4f}",
            f"{ours['bytes'] / mean['bytes']:.3f}",
        ]
        print(("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells))
    worst = []
    for path in images:
        peers = [
            rows[(path.name, n)]["mse"]
            for n in names
            if not n.startswith("kmquant") and "(ref)" not in n
        ]
        if peers:
            worst.append(rows[(path.name, "kmquant")]["mse"] / min(peers))
    if worst:
        print(f"\nkmquant MSE / best non-reference peer's MSE: max over images {max(worst):.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="images or folders (default: bundled sample)")
    parser.add_argument("-k", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (median)")
    parser.add_argument(
        "--budget",
        type=float,
        default=3.0,
        help="stop repeating a method once it has spent this many seconds",
    )
    parser.add_argument("--no-slow", action="store_true", help="skip the scikit-learn peers")
    parser.add_argument("--only", nargs="+", help="run only these methods (by name prefix)")
    parser.add_argument(
        "--seed", type=int, default=0, help="kmquant's seed (the peers keep their own)"
    )
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)

    images = list_images(args.inputs) or [kmquant.sample_image_path()]
    methods, missing = available_methods(include_slow=not args.no_slow, seed=args.seed)
    if args.only:
        methods = [m for m in methods if m.name.startswith(("kmquant", *args.only))]
    for line in missing:
        print(f"skipped, not installed: {line}", file=sys.stderr)
    names = [method.name for method in methods]
    print(f"images: {len(images)}; methods: {', '.join(names)}")
    print("cell: MSE / PSNR / seconds (median) / PNG bytes")
    # Compile and cache kmquant's kernels, for both presets, before anything is timed: after a
    # change to the kernels the first run otherwise compiled inside its timing. The first image
    # whole, at every K: a 64 x 64 crop at K = 8 left kernels that only larger inputs reach
    # (the parallel paths, the mapping from guesses) to the first timed run, which then took
    # 3 s and, over the time budget, stood alone for that image.
    warm_up = kmquant.read_image(images[0])[:, :, :3]
    for k in args.k:
        for speed in ("default", "fast"):
            kmquant.quantize(warm_up, k, rng=0, speed=speed)
    all_rows = {}
    for k in args.k:
        rows = {}
        for path in images:
            image = kmquant.read_image(path)[:, :, :3]
            for method in methods:
                rows[(path.name, method.name)] = measure(
                    method, image, k, path, args.repeat, args.budget
                )
        print_table(k, names, images, rows, args.markdown)
        all_rows[k] = {f"{image}|{name}": row for (image, name), row in rows.items()}
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
