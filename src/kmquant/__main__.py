"""Command-line interface: ``kmquant compress``, ``kmquant demo``.

This is the only module that prints. Library errors (:class:`KmquantError`) become one line on
stderr and exit code 1; bad arguments give one line and exit code 2; nothing ever prints a
traceback (set ``KMQUANT_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import __version__
from ._exceptions import KmquantError, OutputExistsError
from ._sample import sample_image_path
from .io import (
    DEFAULT_OPTIMIZE,
    OPTIMIZE_LEVELS,
    atomic_write_bytes,
    check_output_path,
    decode_image,
    encode_png,
    read_bytes,
)
from .kmeans import INIT_METHODS
from .metrics import compression_ratio, mse, psnr, ssim
from .quantize import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    MAX_COLORS,
    SPEEDS,
    QuantizedImage,
    flatten_alpha,
    quantize,
)

PROG = "kmquant"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
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


def _add_kmeans_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-k",
        "--colors",
        dest="n_colors",
        type=_n_colors,
        default=16,
        metavar="K",
        help=f"number of colours, 1..{MAX_COLORS} (default 16)",
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
        help="fast: one k-means on coarse colours; default: restarts and swaps on coarse "
        "colours, refined on all; best: restarts and swaps on all colours (default: default)",
    )
    parser.add_argument(
        "--n-init",
        type=_positive_int,
        default=None,
        help="k-means restarts, best kept (default: 1 with --speed fast, else 3)",
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
    compress.add_argument("input", metavar="IN", help="input image, or - for standard input")
    compress.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="output PNG, or - for standard output "
        "(default: IN's name with -kK.png, beside it; stdout for stdin)",
    )
    _add_kmeans_options(compress)
    compress.add_argument(
        "--optimize",
        type=int,
        choices=OPTIMIZE_LEVELS,
        default=DEFAULT_OPTIMIZE,
        help="PNG compression effort: 0 zlib default, 1 zlib 9, 2 oxipng (default), "
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
    _add_kmeans_options(demo)
    return parser


# ------------------------------------------------------------------------------------------


def _default_output(input_name: str, n_colors: int) -> str:
    if input_name == STDIO:
        return STDIO
    source = Path(input_name)
    return str(source.with_name(f"{source.stem}-k{n_colors}.png"))


def _quantize_reporting_warnings(image: np.ndarray, args: argparse.Namespace) -> QuantizedImage:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = quantize(
            image,
            args.n_colors,
            init=args.init,
            n_init=args.n_init,
            max_iter=args.max_iter,
            tol=args.tol,
            speed=args.speed,
            rng=args.seed,
        )
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    return result


def _summary(
    image: np.ndarray, result: QuantizedImage, input_bytes: int, output_bytes: int, seconds: float
) -> dict[str, Any]:
    reference = flatten_alpha(image) if image.shape[2] in (2, 4) else image
    compressed = result.to_image()
    peak = psnr(reference, compressed)
    return {
        "n_colors": result.n_colors,
        "psnr": None if math.isinf(peak) else round(peak, 4),
        "ssim": round(ssim(reference, compressed), 6),
        "mse": round(mse(reference, compressed), 6),
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "raw_bytes": int(reference.size),
        "ratio": round(compression_ratio(input_bytes, output_bytes), 4),
        "seconds": round(seconds, 4),
        "n_iter": result.n_iter,
        "inertia": result.inertia,
    }


def _summary_line(source: str, target: str, summary: dict[str, Any]) -> str:
    peak = "inf" if summary["psnr"] is None else f"{summary['psnr']:.2f}"
    return (
        f"{source} -> {target}: K={summary['n_colors']}  PSNR {peak} dB  "
        f"SSIM {summary['ssim']:.4f}  {summary['input_bytes']:,} -> "
        f"{summary['output_bytes']:,} bytes ({summary['ratio']:.2f}x)  "
        f"{summary['seconds']:.2f} s"
    )


def _compress(args: argparse.Namespace) -> int:
    output = args.output or _default_output(args.input, args.n_colors)
    if output != STDIO:
        check_output_path(output, overwrite=args.force)
    started = time.perf_counter()
    if args.input == STDIO:
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        data, name = read_bytes(args.input), args.input
    image = decode_image(data, name)
    result = _quantize_reporting_warnings(image, args)
    png = encode_png(result, optimize=args.optimize)
    if output == STDIO:
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(output, png, overwrite=args.force)
    summary = _summary(image, result, len(data), len(png), time.perf_counter() - started)
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
    data = read_bytes(source)
    image = decode_image(data, source.name)
    result = _quantize_reporting_warnings(image, args)
    png = encode_png(result)
    png_path = folder / f"{source.stem}-k{args.n_colors}.png"
    atomic_write_bytes(png_path, png, overwrite=True)
    summary = _summary(image, result, len(data), len(png), time.perf_counter() - started)
    figure_path = folder / "comparison.png"
    figure = comparison_figure(image, result, metrics=summary)
    atomic_write_bytes(figure_path, figure_png_bytes(figure), overwrite=True)
    print(_summary_line(source.name, str(png_path), summary))
    print(f"comparison figure: {figure_path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (callable from tests)."""
    parser = main_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0) if not isinstance(stop.code, str) else EXIT_USAGE
    handlers = {"compress": _compress, "demo": _demo}
    try:
        return handlers[args.command](args)
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
