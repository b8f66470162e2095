"""Inner steps side by side with the code they replaced or beside, in one process.

    python benchmarks/kernels.py ../shared/corpus/photos            # all six sections
    python benchmarks/kernels.py --only png -k 2 4 16 256           # the bundled sample
    python benchmarks/kernels.py ../shared/corpus/photos --only stages -k 64 256

- ``histogram``: :func:`kmquant.color_histogram` (the bitmap route for RGB) against
  :func:`kmquant.histogram.hashed_histogram` (hash table + sort of the distinct colours) on
  the same pixels; both must give the same histogram.
- ``boxes``: the default preset's variance-split boxes (192 sqrt(K) of them) on each
  image's colours, packed and the two halves of the first cut cut side by side
  (:func:`kmquant._kernels.split_colors_into_boxes_in_halves`, what ``quantize`` uses for
  RGB), packed in one tree (:func:`kmquant._kernels.split_colors_into_boxes`) and on float
  rows (:func:`kmquant._kernels.split_into_boxes`, the general route); all must give the
  same boxes.
- ``dither``: the three-feature Floyd-Steinberg kernel (grid of candidate lists) against the
  general one (every entry scanned) on each image's own palette at each K; both must give the
  same labels.
- ``stages``: where ``quantize(speed="default")`` spends its time, by wrapping the engine's
  steps (boxes, the restarts: k-means++ seeding and Lloyd, run side by side; Lloyd in the
  swaps and in the final refine on every distinct colour, the rest of the swaps, the
  histogram and the mapping).
- ``mapping``: each distinct colour's nearest palette entry, on each image's own palette at
  each K, four ways: the grid (:func:`kmquant._kernels.nearest_labels_by_grid`, what
  ``quantize`` uses for three features above K = 96 or without k-means' labels), the search
  from k-means' labels as guesses (:func:`kmquant._kernels.nearest_labels_from`, used for
  RGBA and grey), the scan of every entry from those guesses
  (:func:`kmquant._kernels.nearest_labels_by_scan`, used for three features up to K = 96)
  and the full scan (:func:`kmquant._kernels.nearest_labels`); all must give the same
  labels.
- ``png``: :func:`kmquant.encode_png` at each ``optimize`` level on each image's quantized
  result, beside Pillow's indexed-PNG writer at ``compress_level=1`` and ``optimize=True``
  (zlib level 9), which levels 0 (now libdeflate at level 1) and 1 replaced; bytes and
  milliseconds per level. Every file must decode to the same indices and palette, and at 8
  bits (17 colours or more) level 1 must be byte for byte Pillow's file.

Times are medians of ``--repeat`` runs (sums over images), after one warm-up run.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import kmquant
from kmquant import _kernels, engine
from kmquant.colorspace import color_features
from kmquant.histogram import color_histogram, hashed_histogram
from kmquant.remap import EDGE_GAP, ERROR_LIMIT, _typical_gap

# The module, not the function the package re-exports under the same name.
quantize_module = importlib.import_module("kmquant.quantize")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def median_seconds(task: Callable[[], object], repeat: int) -> float:
    task()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        task()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def histogram_section(images: list[np.ndarray], repeat: int) -> None:
    bitmap = hashed = 0.0
    for image in images:
        pixels = np.ascontiguousarray(image.reshape(-1, 3))
        first, second = color_histogram(pixels), hashed_histogram(pixels)
        assert np.array_equal(first.colors, second.colors)
        assert np.array_equal(first.inverse, second.inverse)
        bitmap += median_seconds(lambda p=pixels: color_histogram(p), repeat)
        hashed += median_seconds(lambda p=pixels: hashed_histogram(p), repeat)
    n = len(images)
    print(
        f"histogram: bitmap {1000 * bitmap / n:.2f} ms, hash + sort {1000 * hashed / n:.2f} ms "
        f"an image ({hashed / bitmap:.1f}x), same histograms"
    )


def boxes_section(images: list[np.ndarray], ks: list[int], repeat: int) -> None:
    for k in ks:
        n_boxes = engine.PRESETS["default"].boxes_for(k)
        assert n_boxes is not None
        halves_seconds = packed_seconds = general_seconds = 0.0
        for image in images:
            histogram = color_histogram(image)
            colors, counts = histogram.colors, histogram.counts
            floats, weights = colors.astype(np.float64), counts.astype(np.float64)
            packed = engine.split_into_boxes(floats, weights, n_boxes, colors=colors, counts=counts)
            general = engine.split_into_boxes(floats, weights, n_boxes)
            if packed is None or general is None:
                continue  # no more colours than boxes: nothing to cut
            one_tree = _kernels.split_colors_into_boxes(colors, counts, n_boxes)
            for index, name in ((0, "points"), (1, "weights"), (3, "starts"), (4, "stops")):
                assert np.array_equal(getattr(packed, name), getattr(general, name))
                assert np.array_equal(one_tree[index], getattr(general, name))
            halves_seconds += median_seconds(
                lambda c=colors, w=counts, b=n_boxes: _kernels.split_colors_into_boxes_in_halves(
                    c, w, b
                ),
                repeat,
            )
            packed_seconds += median_seconds(
                lambda c=colors, w=counts, b=n_boxes: _kernels.split_colors_into_boxes(c, w, b),
                repeat,
            )
            general_seconds += median_seconds(
                lambda c=floats, w=weights, b=n_boxes: _kernels.split_into_boxes(c, w, b), repeat
            )
        n = len(images)
        print(
            f"boxes K={k} ({n_boxes}): packed in halves side by side "
            f"{1000 * halves_seconds / n:.2f} ms, packed in one tree "
            f"{1000 * packed_seconds / n:.2f} ms, float rows {1000 * general_seconds / n:.2f} ms "
            f"an image ({general_seconds / max(halves_seconds, 1e-12):.2f}x and "
            f"{packed_seconds / max(halves_seconds, 1e-12):.2f}x the halves' time), same boxes"
        )


def dither_section(images: list[np.ndarray], ks: list[int], repeat: int) -> None:
    for k in ks:
        grid = general = 0.0
        for image in images:
            histogram = color_histogram(image)
            points = color_features(histogram.colors, "rgb")
            entries = kmquant.quantize(image, k, rng=0).palette
            palette = entries.astype(np.float64)
            gap = _typical_gap(palette)
            shape = image.shape[:2]
            common = (points, histogram.inverse, *shape, palette, 1.0)
            limits = (ERROR_LIMIT * gap, EDGE_GAP * gap)
            integers = (histogram.colors, entries)

            def three(common=common, limits=limits, integers=integers):
                return _kernels.dither_floyd_steinberg_3(*common, *limits, *integers)[0]

            def every(common=common, limits=limits):
                return _kernels.dither_floyd_steinberg(*common, 3, *limits)

            assert np.array_equal(three(), every())
            grid += median_seconds(three, repeat)
            general += median_seconds(every, repeat)
        n = len(images)
        print(
            f"Floyd-Steinberg K={k}: grid kernel {1000 * grid / n:.1f} ms, full scan "
            f"{1000 * general / n:.1f} ms an image ({general / grid:.1f}x), same labels"
        )


def stages_section(images: list[np.ndarray], ks: list[int], repeat: int) -> None:
    spent: dict[str, float] = defaultdict(float)
    in_swaps = [False]

    def timed(module, name, label=None):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            result = original(*args, **kwargs)
            key = label(args) if label else name
            if key is not None:  # None: counted by the caller
                spent[key] += time.perf_counter() - started
            return result

        setattr(module, name, wrapper)
        return original

    n_colors = [0]  # distinct colours of the image being quantized

    def lloyd_label(args):
        if in_swaps[0]:
            # The swaps' Lloyd runs go through lloyd_runs, one at a time or side by side.
            return None
        return "lloyd refine (all colours)" if args[0].shape[0] == n_colors[0] else "lloyd, other"

    original_histogram = quantize_module.color_histogram

    def histogram(pixels, **options):
        started = time.perf_counter()
        result = original_histogram(pixels, **options)
        spent["histogram"] += time.perf_counter() - started
        n_colors[0] = result.n_colors
        return result

    original_swaps = engine.improve_by_swaps

    def swaps(*args, **kwargs):
        in_swaps[0] = True
        started = time.perf_counter()
        try:
            return original_swaps(*args, **kwargs)
        finally:
            spent["swaps, outside lloyd"] += time.perf_counter() - started
            in_swaps[0] = False

    engine.improve_by_swaps = swaps
    timed(engine, "split_into_boxes", lambda args: "boxes")
    timed(engine, "best_restart", lambda args: "restarts (k-means++ and lloyd, side by side)")
    timed(engine, "lloyd", lloyd_label)
    timed(engine, "lloyd_runs", lambda args: "lloyd in swaps")
    quantize_module.color_histogram = histogram
    timed(quantize_module, "apply_palette", lambda args: "mapping")
    for k in ks:
        for image in images:
            kmquant.quantize(image, k, rng=0)
        spent.clear()
        started = time.perf_counter()
        for _ in range(repeat):
            for image in images:
                kmquant.quantize(image, k, rng=0)
        total = (time.perf_counter() - started) / repeat
        spent["swaps, outside lloyd"] -= spent["lloyd in swaps"]
        parts = ", ".join(
            f"{name} {100 * seconds / repeat / total:.0f}%"
            for name, seconds in sorted(spent.items(), key=lambda item: -item[1])
        )
        print(f"default K={k}: {1000 * total / len(images):.1f} ms an image: {parts}")


def mapping_section(images: list[np.ndarray], ks: list[int], repeat: int) -> None:
    guesses_seen: list[np.ndarray] = []

    def capture(self, palette, places, center_labels, rows=None):
        labels = center_labels if rows is None else center_labels[rows]
        guesses_seen.append(places.astype(np.uint8)[labels])
        return None

    problem_type = quantize_module.ClusteringProblem
    original = problem_type.entry_guesses
    problem_type.entry_guesses = capture
    try:
        for k in ks:
            spent: dict[str, float] = defaultdict(float)
            for image in images:
                guesses_seen.clear()
                palette = kmquant.quantize(image, k, rng=0).palette.astype(np.float64)
                colors = color_histogram(image).colors.astype(np.float64)
                guesses = np.ascontiguousarray(guesses_seen[-1])
                args = (colors, palette)
                ways = {
                    "grid": lambda out, a=args: _kernels.nearest_labels_by_grid(*a, out),
                    "from guesses": lambda out, a=args, g=guesses: _kernels.nearest_labels_from(
                        *a, g, out
                    ),
                    "scan from guesses": lambda out, a=args, g=guesses: (
                        _kernels.nearest_labels_by_scan(*a, g, out)
                    ),
                    "full scan": lambda out, a=args: _kernels.nearest_labels(*a, out),
                }
                found = {}
                for name, way in ways.items():
                    out = np.empty(len(colors), dtype=np.intp)
                    way(out)
                    found[name] = out
                    spent[name] += median_seconds(lambda w=way, o=out: w(o), repeat)
                assert all(np.array_equal(found["full scan"], f) for f in found.values())
            n = len(images)
            parts = ", ".join(f"{name} {1000 * t / n:.2f} ms" for name, t in spent.items())
            print(f"mapping K={k}: {parts} an image, same labels")
    finally:
        problem_type.entry_guesses = original


def pillow_png(result: kmquant.QuantizedImage, **options: object) -> bytes:
    """The indexed PNG as Pillow writes it (kmquant's writer at levels 0 and 1 before 0acf6f3)."""
    indexed = Image.fromarray(np.ascontiguousarray(result.labels, dtype=np.uint8), "P")
    indexed.putpalette(np.ascontiguousarray(result.palette[:, :3]).tobytes(), "RGB")
    buffer = io.BytesIO()
    indexed.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def decoded_png(data: bytes) -> tuple[np.ndarray, bytes]:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image), bytes(image.getpalette() or [])


def png_section(images: list[np.ndarray], ks: list[int], repeat: int) -> None:
    writers: dict[str, Callable[[kmquant.QuantizedImage], bytes]] = {
        f"optimize {level}": lambda r, level=level: kmquant.encode_png(r, optimize=level)
        for level in kmquant.io.OPTIMIZE_LEVELS
    }
    writers["Pillow zlib 1"] = lambda r: pillow_png(r, compress_level=1)
    writers["Pillow zlib 9"] = lambda r: pillow_png(r, optimize=True)
    for k in ks:
        sizes: dict[str, int] = defaultdict(int)
        seconds: dict[str, float] = defaultdict(float)
        identical = {0: True, 1: True}  # files byte for byte Pillow's, every image
        for image in images:
            result = kmquant.quantize(image, k, rng=0)
            files = {name: write(result) for name, write in writers.items()}
            expected = decoded_png(files["Pillow zlib 1"])
            for name, data in files.items():
                labels, palette = decoded_png(data)
                assert np.array_equal(labels, expected[0]), name
                assert palette[: 3 * result.n_colors] == expected[1][: 3 * result.n_colors], name
                sizes[name] += len(data)
                seconds[name] += median_seconds(lambda w=writers[name], r=result: w(r), repeat)
            identical[0] &= files["optimize 0"] == files["Pillow zlib 1"]
            identical[1] &= files["optimize 1"] == files["Pillow zlib 9"]
            if result.n_colors > 16:
                assert identical[1], "8-bit level 1 files differ from Pillow's"
        n = len(images)
        print(f"PNG K={k} (mean bytes, ms an image):")
        for name in writers:
            print(f"  {name:<14} {sizes[name] / n:>10,.0f} B  {1000 * seconds[name] / n:6.2f} ms")
        for level, pillow in ((0, "Pillow zlib 1"), (1, "Pillow zlib 9")):
            ours = f"optimize {level}"
            same = " (the same files)" if identical[level] else ""
            print(
                f"  optimize {level} / {pillow}: bytes {sizes[ours] / sizes[pillow]:.3f}, "
                f"time {seconds[ours] / seconds[pillow]:.2f}{same}"
            )
        print(
            f"  optimize 2 / optimize 0: bytes {sizes['optimize 2'] / sizes['optimize 0']:.3f}; "
            f"/ optimize 1: {sizes['optimize 2'] / sizes['optimize 1']:.3f}"
        )


SECTIONS = ("histogram", "boxes", "dither", "stages", "mapping", "png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", type=Path, help="images or folders (default: sample)")
    parser.add_argument("-k", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        help="sections to run",
    )
    args = parser.parse_args()
    paths: list[Path] = []
    for source in args.inputs or [Path(kmquant.__file__).parent / "data" / "kodim03.png"]:
        if source.is_dir():
            paths += sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(source)
    try:
        images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    except OSError as error:
        parser.error(f"cannot read an input: {error}")
    if not images:
        parser.error("no images found in the inputs")
    sections = args.only or SECTIONS
    print(f"{len(images)} images, medians of {args.repeat} runs")
    if "histogram" in sections:
        histogram_section(images, args.repeat)
    if "boxes" in sections:
        boxes_section(images, args.k, args.repeat)
    if "dither" in sections:
        dither_section(images, args.k, args.repeat)
    if "stages" in sections:
        stages_section(images, args.k, args.repeat)
    if "mapping" in sections:
        mapping_section(images, args.k, args.repeat)
    if "png" in sections:
        png_section(images, args.k, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
