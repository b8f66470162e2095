"""Command-line interface: ``kmquant compress``, ``kmquant demo``.

This is the only module that prints. Library errors (:class:`KmquantError`) become one line on
stderr and exit code 1; bad arguments give one line and exit code 2; nothing ever prints a
traceback (set ``KMQUANT_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import __version__, _kernels
from ._exceptions import KmquantError, KmquantWarning, OutputExistsError, QualityTooLowError
from ._sample import sample_image_path
from .colorspace import SPACES
from .io import (
    DEFAULT_OPTIMIZE,
    OPTIMIZE_LEVELS,
    atomic_write_bytes,
    check_output_path,
    decode_image,
    encode_pixels_png,
    encode_png,
    read_bytes,
)
from .kmeans import INIT_METHODS
from .metrics import WHITE, composite, compression_ratio, indexed_quality_report
from .palette import PALETTE_FORMATS, palette_shares, palette_text, parse_palette, share_order
from .quantize import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    MAX_COLORS,
    SPEEDS,
    QuantizedImage,
    quantize,
    remap_image,
)
from .remap import DITHERS
from .select import best_within_bytes, elbow_curve, fewest_colors

PROG = "kmquant"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_QUALITY = 99  # as pngquant --quality
EXIT_INTERRUPTED = 130
STDIO = "-"


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _n_colors(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"K must be an integer, got {text!r}") from None
    if not 1 <= value <= MAX_COLORS:
        raise argparse.ArgumentTypeError(f"K must be in 1..{MAX_COLORS}, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _k_list(text: str) -> list[int]:
    return [_n_colors(part) for part in text.split(",") if part.strip()]


def _k_range(text: str) -> range:
    low, separator, high = text.partition(":")
    if not separator:
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH such as 2:64, got {text!r}")
    first, last = _n_colors(low), _n_colors(high)
    if last <= first:
        raise argparse.ArgumentTypeError(f"HIGH must exceed LOW, got {text!r}")
    return range(first, last + 1)


def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}")
    return value


def _add_rendering_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        choices=SPACES,
        default="rgb",
        help="colour space k-means runs in; the palette is exact sRGB (default rgb: best PSNR)",
    )
    parser.add_argument(
        "--dither",
        choices=DITHERS,
        default="none",
        help="none (default), floyd-steinberg (serpentine error diffusion) or ordered (8x8 Bayer)",
    )
    parser.add_argument(
        "--dither-strength",
        type=_strength,
        default=1.0,
        metavar="S",
        help="0..1, share of the error diffused (default 1)",
    )


def _add_kmeans_options(parser: argparse.ArgumentParser, *, k_help: str | None = None) -> None:
    if k_help is not None:
        parser.add_argument(
            "-k",
            "--colors",
            dest="n_colors",
            type=_n_colors,
            default=None,
            metavar="K",
            help=k_help,
        )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; same seed and input give the same bytes (default 0)",
    )
    parser.add_argument(
        "--speed",
        choices=SPEEDS,
        default="default",
        help="fast: RGB pixels counted in 5-bit cells, split by variance, mapped by cell (else "
        "one k-means on coarse colours); default: restarts and swaps on coarse colours, "
        "refined on all; best: restarts and swaps on all colours (default: default)",
    )
    _add_rendering_options(parser)
    parser.add_argument(
        "--n-init",
        type=_positive_int,
        default=None,
        help="k-means restarts, best kept (default: 3, and 10 for images with few colours; "
        "with --speed fast, none on RGB without dithering, else 1)",
    )
    parser.add_argument(
        "--max-iter",
        type=_positive_int,
        default=DEFAULT_MAX_ITER,
        help=f"most Lloyd iterations per restart (default {DEFAULT_MAX_ITER})",
    )
    parser.add_argument(
        "--tol",
        type=_non_negative_float,
        default=DEFAULT_TOL,
        help=f"relative tolerance on centre shift (default {DEFAULT_TOL:g})",
    )
    parser.add_argument(
        "--init",
        choices=INIT_METHODS,
        default="k-means++",
        help="initialisation (default k-means++)",
    )


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="input image, or - for standard input")


def main_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kmquant`` command."""
    parser = _OneLineParser(
        prog=PROG,
        description="Image compression by k-means colour quantization: K colours, "
        "written as a real indexed PNG.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )

    compress = commands.add_parser(
        "compress",
        help="compress one image to K colours",
        description="Compress an image to K colours found by k-means and write an indexed PNG.",
    )
    _add_input(compress)
    compress.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output PNG, or - for standard output "
        "(default: IN's name with -kK.png, beside it; stdout for stdin)",
    )
    _add_kmeans_options(
        compress,
        k_help=f"number of colours, 1..{MAX_COLORS} (default 16; with a quality target, "
        "the most it may use, default 256)",
    )
    targets = compress.add_argument_group(
        "choosing K", "the fewest colours that meet every target given (exit 99 if 256 cannot)"
    )
    targets.add_argument("--min-psnr", type=float, metavar="DB", help="PSNR at least DB")
    targets.add_argument("--min-ssim", type=float, metavar="S", help="SSIM at least S")
    targets.add_argument(
        "--max-delta-e", type=float, metavar="E", help="mean CIEDE2000 difference at most E"
    )
    targets.add_argument(
        "--max-bytes",
        type=_positive_int,
        metavar="N",
        help="instead: the most colours whose PNG fits in N bytes",
    )
    targets.add_argument(
        "--best-effort",
        action="store_true",
        help="when no K meets the target, write the best result anyway (exit 0)",
    )
    compress.add_argument(
        "--palette",
        metavar="FILE",
        help="map to this palette (JSON, GIMP .gpl, CSS or an image) instead of computing one",
    )
    compress.add_argument(
        "--optimize",
        type=int,
        choices=OPTIMIZE_LEVELS,
        default=DEFAULT_OPTIMIZE,
        help="PNG compression effort: 0 libdeflate 1 (fastest), 1 zlib 9, 2 oxipng (default), "
        "3 oxipng harder; every level decodes to the same pixels",
    )
    compress.add_argument(
        "--force", action="store_true", help="overwrite OUT if it exists (default: refuse)"
    )
    compress.add_argument(
        "--json", action="store_true", help="print the summary as one JSON object"
    )

    demo = commands.add_parser(
        "demo",
        help="compress the bundled sample photo and draw a comparison",
        description="Compress the bundled Kodak sample photo and write the indexed PNG and a "
        "side-by-side comparison figure into a folder (its files are replaced).",
    )
    demo.add_argument(
        "-o",
        "--output-dir",
        default="demo-out",
        metavar="DIR",
        help="folder for the results (default demo-out)",
    )
    _add_kmeans_options(demo, k_help="number of colours (default 16)")

    palette = commands.add_parser(
        "palette",
        help="extract an image's K main colours",
        description="Find K colours by k-means and print them by share of the image, with hex "
        "codes, as JSON, a GIMP palette, CSS custom properties, or a swatch PNG.",
    )
    _add_input(palette)
    _add_kmeans_options(palette, k_help="number of colours (default 8)")
    palette.add_argument("--format", choices=PALETTE_FORMATS, default="json")
    palette.add_argument(
        "-o", "--output", metavar="FILE", help="write here (default: standard output; png needs it)"
    )
    palette.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    elbow = commands.add_parser(
        "elbow",
        help="inertia, PSNR and bytes for a range of K, and the knee",
        description="Sweep K, print inertia (within-cluster sum of squares), PSNR and PNG bytes "
        "for each, and suggest the K at the knee of the inertia curve (Kneedle).",
    )
    _add_input(elbow)
    elbow.add_argument(
        "--k-range",
        type=_k_range,
        default=range(2, 65),
        metavar="LOW:HIGH",
        help="K values to sweep (default 2:64)",
    )
    elbow.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    elbow.add_argument("--plot", metavar="FILE", help="also draw the curve to this PNG")
    elbow.add_argument("--json", action="store_true", help="print one JSON object")
    elbow.add_argument("--force", action="store_true", help="overwrite the plot if it exists")

    batch = commands.add_parser(
        "batch",
        help="compress many images: files, folders (recursive), globs -> the same tree",
        description="Compress every image named (files, folders searched recursively, globs) "
        "into OUTDIR, keeping the relative tree, on a process pool or a Dask cluster. One bad "
        "file never stops the others; the exit code is 1 if any failed.",
    )
    batch.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder or glob")
    batch.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR")
    batch.add_argument(
        "-k",
        "--colors",
        dest="n_colors",
        type=_n_colors,
        default=16,
        metavar="K",
        help=f"number of colours, 1..{MAX_COLORS} (default 16)",
    )
    batch.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    batch.add_argument("--speed", choices=SPEEDS, default="default")
    _add_rendering_options(batch)
    batch.add_argument("--optimize", type=int, choices=OPTIMIZE_LEVELS, default=DEFAULT_OPTIMIZE)
    batch.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core)",
    )
    batch.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on Dask: 'local' starts a LocalCluster, or a scheduler such as "
        "tcp://host:8786 (workers must reach the paths)",
    )
    batch.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs that exist alone (resume an interrupted run)",
    )
    batch.add_argument(
        "--skip-if-larger",
        action="store_true",
        help="write nothing for an image whose PNG would not be smaller than its input",
    )
    batch.add_argument(
        "--shared-palette",
        action="store_true",
        help="one palette for all images (k-means on their summed histograms)",
    )

    serve = commands.add_parser(
        "serve",
        help="the interactive web page (live re-quantization) and its JSON API",
        description="Serve the interactive page and the HTTP API (OpenAPI docs at /docs). "
        "Needs the web extra: pip install 'kmquant[web]'.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--max-upload-mb", type=_positive_int, default=50, help="upload limit (default 50 MB)"
    )
    serve.add_argument(
        "--max-megapixels",
        type=_positive_int,
        default=100,
        help="image size limit (default 100 megapixels)",
    )

    compare = commands.add_parser(
        "compare",
        help="report figure: original, compressed, error map, palette, metrics",
        description="Draw original | compressed | per-pixel error | palette shares with the "
        "metrics, one row per K.",
    )
    _add_input(compare)
    compare.add_argument(
        "-k",
        "--colors",
        dest="k_list",
        type=_k_list,
        default=[16],
        metavar="K[,K...]",
        help="one or more K, comma-separated (default 16)",
    )
    compare.add_argument("-o", "--output", required=True, metavar="FILE", help="report PNG")
    compare.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    compare.add_argument("--speed", choices=SPEEDS, default="default")
    _add_rendering_options(compare)
    compare.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    return parser


# ------------------------------------------------------------------------------------------


def _default_output(input_name: str, n_colors: str) -> str:
    if input_name == STDIO:
        return STDIO
    source = Path(input_name)
    return str(source.with_name(f"{source.stem}-k{n_colors}.png"))


@contextlib.contextmanager
def _reporting_warnings() -> Iterator[None]:
    """Print the library's warnings as one ``kmquant: warning:`` line each, on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                print(f"{PROG}: warning: {warning.message}", file=sys.stderr)


def _read_input(name: str) -> tuple[bytes, np.ndarray]:
    data = sys.stdin.buffer.read() if name == STDIO else read_bytes(name)
    with _reporting_warnings():  # an animation's left-out frames
        return data, decode_image(data, "<stdin>" if name == STDIO else name)


def _rendering(args: argparse.Namespace) -> dict[str, Any]:
    """The options :func:`_add_rendering_options` declares, as keyword arguments."""
    return {"space": args.space, "dither": args.dither, "dither_strength": args.dither_strength}


def _quantize(image: np.ndarray, args: argparse.Namespace, n_colors: int) -> QuantizedImage:
    return quantize(
        image,
        n_colors,
        init=args.init,
        n_init=args.n_init,
        max_iter=args.max_iter,
        tol=args.tol,
        speed=args.speed,
        **_rendering(args),
        rng=args.seed,
    )


def _quality(image: np.ndarray, result: QuantizedImage) -> dict[str, float]:
    """The summary's metrics of a result, and the raw (decoded) size of the image."""
    # Rebuilt in bands of rows: a large image's quantized copy is never whole in memory.
    report = indexed_quality_report(image, result.labels, result.palette)
    report["raw_bytes"] = int(image.size)
    return report


def _summary(
    report: dict[str, float],
    result: QuantizedImage,
    input_bytes: int,
    output_bytes: int,
    seconds: float,
) -> dict[str, Any]:
    peak = report["psnr"]
    summary = {
        "n_colors": result.n_colors,
        "psnr": None if math.isinf(peak) else round(peak, 4),
        "ssim": round(report["ssim"], 6),
        "mse": round(report["mse"], 6),
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "raw_bytes": int(report["raw_bytes"]),
        "ratio": round(compression_ratio(input_bytes, output_bytes), 4),
        "seconds": round(seconds, 4),
        "n_iter": result.n_iter,
        "inertia": result.inertia,
    }
    if "delta_e" in report:
        summary["delta_e"] = round(report["delta_e"], 4)
        summary["delta_e_p95"] = round(report["delta_e_p95"], 4)
    return summary


def _summary_line(source: str, target: str, summary: dict[str, Any]) -> str:
    peak = "inf" if summary["psnr"] is None else f"{summary['psnr']:.2f}"
    line = (
        f"{source} -> {target}: K={summary['n_colors']}  PSNR {peak} dB  "
        f"SSIM {summary['ssim']:.4f}  {summary['input_bytes']:,} -> "
        f"{summary['output_bytes']:,} bytes ({summary['ratio']:.2f}x)  "
        f"{summary['seconds']:.2f} s"
    )
    if summary.get("chosen_by"):
        line += f"  [{summary['chosen_by']}]"
    return line


def _has_quality_target(args: argparse.Namespace) -> bool:
    return any(value is not None for value in (args.min_psnr, args.min_ssim, args.max_delta_e))


def _choose(image: np.ndarray, args: argparse.Namespace) -> tuple[QuantizedImage, str | None]:
    """The result for compress: a given palette, a target's K, or plain K."""
    if args.palette:
        palette = parse_palette(read_bytes(args.palette), name=args.palette)
        result = remap_image(
            image,
            palette,
            **_rendering(args),
        )
        return result, f"palette of {palette.shape[0]} colours from {args.palette}"
    if _has_quality_target(args):
        choice = fewest_colors(
            image,
            **_rendering(args),
            min_psnr=args.min_psnr,
            min_ssim=args.min_ssim,
            max_delta_e=args.max_delta_e,
            max_colors=args.n_colors or MAX_COLORS,
            best_effort=args.best_effort,
            speed=args.speed,
            rng=args.seed,
        )
        if not choice.met:
            warnings.warn(choice.reason, KmquantWarning, stacklevel=1)
        return choice.result, choice.reason
    if args.max_bytes is not None:
        choice = best_within_bytes(
            image,
            **_rendering(args),
            max_bytes=args.max_bytes,
            optimize=args.optimize,
            max_colors=args.n_colors or MAX_COLORS,
            speed=args.speed,
            rng=args.seed,
        )
        return choice.result, choice.reason
    return _quantize(image, args, args.n_colors or 16), None


def _compress(args: argparse.Namespace) -> int:
    quality_target, size_target = _has_quality_target(args), args.max_bytes is not None
    if args.palette and (quality_target or size_target):
        raise KmquantError("--palette cannot be combined with a quality or size target")
    targeted = bool(args.palette) or quality_target or size_target
    default_name = "q" if targeted else str(args.n_colors or 16)
    output = args.output or _default_output(args.input, default_name)
    if output != STDIO:
        check_output_path(output, overwrite=args.force)
    started = time.perf_counter()
    data, image = _read_input(args.input)
    input_bytes = len(data)
    del data  # only its size is reported; a big file's bytes need not stay in memory
    with _reporting_warnings():
        result, reason = _choose(image, args)
    # Measure before encoding, so the decoded image is gone while oxipng runs (at 96
    # megapixels that is the peak of memory); the metrics' time is not reported as ours.
    measuring = time.perf_counter()
    report = _quality(image, result)
    del image
    measuring = time.perf_counter() - measuring
    png = encode_png(result, optimize=args.optimize)
    if output == STDIO:
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(output, png, overwrite=args.force)
    seconds = time.perf_counter() - started - measuring
    summary = _summary(report, result, input_bytes, len(png), seconds)
    summary["chosen_by"] = reason
    report_stream = sys.stderr if output == STDIO else sys.stdout
    source_label = "<stdin>" if args.input == STDIO else args.input
    target_label = "<stdout>" if output == STDIO else output
    if args.json:
        print(
            json.dumps({"input": source_label, "output": target_label, **summary}),
            file=report_stream,
        )
    else:
        print(_summary_line(source_label, target_label, summary), file=report_stream)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from .figures import comparison_figure, figure_png_bytes

    folder = Path(args.output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KmquantError(f"cannot create folder '{folder}': {error.strerror or error}") from None
    source = sample_image_path()
    started = time.perf_counter()
    data, image = _read_input(str(source))
    n_colors = args.n_colors or 16
    with _reporting_warnings():
        result = _quantize(image, args, n_colors)
    png = encode_png(result)
    png_path = folder / f"{source.stem}-k{n_colors}.png"
    atomic_write_bytes(png_path, png, overwrite=True)
    seconds = time.perf_counter() - started
    summary = _summary(_quality(image, result), result, len(data), len(png), seconds)
    figure_path = folder / "comparison.png"
    figure = comparison_figure(image, result, metrics=summary)
    atomic_write_bytes(figure_path, figure_png_bytes(figure), overwrite=True)
    print(_summary_line(source.name, str(png_path), summary))
    print(f"comparison figure: {figure_path}")
    return EXIT_OK


def _palette(args: argparse.Namespace) -> int:
    if args.format == "png" and not args.output:
        raise KmquantError("--format png needs -o FILE")
    if args.output:
        check_output_path(args.output, overwrite=args.force)
    _, image = _read_input(args.input)
    with _reporting_warnings():
        result = _quantize(image, args, args.n_colors or 8)
    shares = palette_shares(result.labels, result.n_colors)
    name = "stdin" if args.input == STDIO else Path(args.input).stem
    if args.format == "png":
        from .figures import palette_swatch

        order = share_order(shares)
        swatch = palette_swatch(result.palette[order], columns=result.n_colors, cell=32)
        atomic_write_bytes(args.output, encode_pixels_png(swatch), overwrite=args.force)
        print(f"{result.n_colors} colours -> {args.output}")
        return EXIT_OK
    text = palette_text(result.palette, shares, args.format, name=name)
    if args.output:
        atomic_write_bytes(args.output, (text + "\n").encode(), overwrite=args.force)
        print(f"{result.n_colors} colours -> {args.output}")
    else:
        print(text)
    return EXIT_OK


def _elbow(args: argparse.Namespace) -> int:
    if args.plot:
        check_output_path(args.plot, overwrite=args.force)
    _, image = _read_input(args.input)
    started = time.perf_counter()
    with _reporting_warnings():
        curve = elbow_curve(image, args.k_range, rng=args.seed)
    seconds = time.perf_counter() - started
    if args.plot:
        from .figures import elbow_figure, figure_png_bytes

        atomic_write_bytes(args.plot, figure_png_bytes(elbow_figure(curve)), overwrite=args.force)
    if args.json:
        points = [
            {
                "n_colors": p.n_colors,
                "inertia": p.inertia,
                "mse": round(p.mse, 6),
                "psnr": None if math.isinf(p.psnr) else round(p.psnr, 4),
                "bytes": p.n_bytes,
            }
            for p in curve.points
        ]
        print(json.dumps({"knee": curve.knee, "seconds": round(seconds, 3), "points": points}))
        return EXIT_OK
    print(f"{'K':>4} {'inertia':>14} {'PSNR dB':>8} {'bytes':>9}")
    for point in curve.points:
        marker = "  <- knee" if point.n_colors == curve.knee else ""
        print(
            f"{point.n_colors:>4} {point.inertia:>14.0f} {point.psnr:>8.2f} "
            f"{point.n_bytes:>9,}{marker}"
        )
    print(f"suggested K: {curve.knee} (knee of the inertia curve by Kneedle; {seconds:.2f} s)")
    if args.plot:
        print(f"elbow plot: {args.plot}")
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from .figures import figure_png_bytes, report_figure

    check_output_path(args.output, overwrite=args.force)
    data, image = _read_input(args.input)
    rows = []
    with _reporting_warnings():
        for n_colors in args.k_list:
            result = quantize(
                image,
                n_colors,
                speed=args.speed,
                **_rendering(args),
                rng=args.seed,
            )
            report = indexed_quality_report(image, result.labels, result.palette)
            report["output_bytes"] = len(encode_png(result))
            report["input_bytes"] = len(data)
            rows.append((result, report))
    reference = composite(image, WHITE) if image.shape[2] == 4 else image
    figure = report_figure(reference, rows)
    atomic_write_bytes(args.output, figure_png_bytes(figure), overwrite=args.force)
    for result, metrics in rows:
        print(
            f"K={result.n_colors}  PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  "
            f"mean dE00 {metrics['delta_e']:.2f}  {int(metrics['output_bytes']):,} bytes"
        )
    print(f"report: {args.output}")
    return EXIT_OK


def _batch(args: argparse.Namespace) -> int:
    from .batch import (
        BatchOptions,
        collect_jobs,
        remove_stale_temporaries,
        run_batch,
        shared_palette,
    )

    started = time.perf_counter()
    jobs = collect_jobs(args.inputs, args.output_dir)
    if not jobs:
        raise KmquantError("no input images found")
    if "://" not in args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(args.output_dir)
    options = BatchOptions(
        n_colors=args.n_colors,
        seed=args.seed,
        speed=args.speed,
        **_rendering(args),
        optimize=args.optimize,
        skip_existing=args.skip_existing,
        skip_if_larger=args.skip_if_larger,
    )
    if args.shared_palette:
        palette = shared_palette(jobs, options)
        options = dataclasses.replace(options, palette=palette)
        images = "image" if len(jobs) == 1 else "images"
        print(f"shared palette: {len(palette)} colours from {len(jobs)} {images}", file=sys.stderr)
    report = _BatchProgress(len(jobs))
    try:
        outcomes = run_batch(
            jobs, options, workers=args.workers, dask=args.dask, on_outcome=report.update
        )
    finally:
        report.close()
    return report.summary(outcomes, time.perf_counter() - started)


class _BatchProgress:
    """A progress bar on a terminal, one line per image otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self, outcome: Any) -> None:
        self.count += 1
        self.bytes_in += outcome.input_bytes
        self.bytes_out += outcome.output_bytes
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.bytes_in / 1e6:.1f} -> {self.bytes_out / 1e6:.1f} MB")
            self.bar.update(1)
            return
        detail = outcome.reason
        if outcome.status == "done":
            detail = (
                f"{outcome.input_bytes:,} -> {outcome.output_bytes:,} bytes, "
                f"PSNR {outcome.psnr:.2f} dB, {outcome.seconds:.2f} s"
            )
            if outcome.reason:
                detail += f" (note: {outcome.reason})"
        print(
            f"[{self.count}/{self.total}] {outcome.status} {outcome.job.relative}: {detail}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def summary(self, outcomes: list[Any], seconds: float) -> int:
        done = [o for o in outcomes if o.status == "done"]
        failed = [o for o in outcomes if o.status == "failed"]
        skipped = len(outcomes) - len(done) - len(failed)
        before = sum(o.input_bytes for o in done)
        after = sum(o.output_bytes for o in done)
        finite = [o.psnr for o in done if o.psnr is not None and math.isfinite(o.psnr)]
        ratio = f" ({before / after:.2f}x)" if after else ""
        mean_psnr = f"mean PSNR {sum(finite) / len(finite):.2f} dB; " if finite else ""
        print(
            f"{len(outcomes)} files: {len(done)} done, {skipped} skipped, {len(failed)} failed; "
            f"{before:,} -> {after:,} bytes{ratio}; {mean_psnr}{seconds:.1f} s "
            f"({len(outcomes) / max(seconds, 1e-9):.2f} images/s)"
        )
        for outcome in failed:
            print(f"failed: {outcome.job.source}: {outcome.reason}")
        return EXIT_ERROR if failed else EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .web.app import create_app
    except ImportError as error:
        raise KmquantError(
            f"the web page needs its extra: pip install 'kmquant[web]' ({error.name} missing)"
        ) from None
    app = create_app(
        max_upload_bytes=args.max_upload_mb * 1024 * 1024,
        max_pixels=args.max_megapixels * 1_000_000,
    )
    print(
        f"kmquant page on http://{args.host}:{args.port}/  (API docs: /docs; Ctrl-C stops)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (callable from tests)."""
    _kernels.let_idle_threads_sleep()
    _kernels.when_compiling(_kernels.say_compiling)
    parser = main_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0) if not isinstance(stop.code, str) else EXIT_USAGE
    handlers = {
        "compress": _compress,
        "demo": _demo,
        "palette": _palette,
        "elbow": _elbow,
        "compare": _compare,
        "batch": _batch,
        "serve": _serve,
    }
    try:
        return handlers[args.command](args)
    except QualityTooLowError as error:
        print(
            f"{PROG}: error: {error} (nothing written; --best-effort writes it anyway)",
            file=sys.stderr,
        )
        return EXIT_QUALITY
    except OutputExistsError as error:
        print(f"{PROG}: error: {error} (use --force to overwrite)", file=sys.stderr)
        return EXIT_ERROR
    except KmquantError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as error:
        if os.environ.get("KMQUANT_DEBUG"):
            raise
        print(f"{PROG}: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
