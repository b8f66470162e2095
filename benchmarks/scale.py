"""Scale: seconds and peak memory of ``kmquant compress -k 16`` from 1 to 96 megapixels.

    python benchmarks/scale.py ../shared/corpus/large/flower_foveon.png --megapixels 1 6 24 96

The source image is resized (Lanczos) to each size and saved as PNG in a scratch folder; each
size is compressed end to end by the command line (decode, quantize, encode with the default
``--optimize 2``, the summary line with its metrics) and, when installed, by
``pngquant 16 --nofs``, both under ``/usr/bin/time -v`` for the peak resident memory. Memory is
also given as a multiple of the decoded image (3 bytes per pixel), and as the bytes each
pixel more than the size before adds to the peak: how memory grows, apart from the start-up
(Python, numpy, numba and its kernels), which is printed first as the peak of the same command
on a 64 x 64 crop.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None


def run_measured(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident bytes of a command (via /usr/bin/time -v)."""
    started = time.perf_counter()
    finished = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - started
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", finished.stderr)[1])
    return seconds, peak_kb * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("--megapixels", nargs="+", type=float, default=[1, 6, 24, 96])
    args = parser.parse_args()
    if not Path("/usr/bin/time").exists():
        print("needs /usr/bin/time (apt-get install time)", file=sys.stderr)
        return 1
    have_pngquant = shutil.which("pngquant") is not None
    source = Image.open(args.source).convert("RGB")
    with tempfile.TemporaryDirectory() as scratch:

        def compress(path: Path) -> tuple[float, int]:
            output = str(Path(scratch) / "out.png")
            command = ["compress", str(path), "-k", "16", "-o", output, "--force", "--seed", "0"]
            return run_measured([sys.executable, "-m", "kmquant", *command])

        crop = Path(scratch) / "crop.png"
        source.crop((0, 0, 64, 64)).save(crop)
        compress(crop)  # loads (or compiles) every kernel the runs below use
        _, start_up = compress(crop)
        print(f"start-up: {start_up / 2**20:,.0f} MiB (the peak on a 64 x 64 crop)\n")
        print(
            "| megapixels | kmquant s | kmquant peak | x decoded | bytes a pixel more"
            " | pngquant s | pngquant peak |"
        )
        print("|---|---|---|---|---|---|---|")
        before: tuple[int, int] | None = None  # pixels and peak of the size before
        for megapixels in args.megapixels:
            scale = math.sqrt(megapixels * 1e6 / (source.width * source.height))
            size = (round(source.width * scale), round(source.height * scale))
            path = Path(scratch) / f"in-{megapixels:g}mp.png"
            source.resize(size, Image.Resampling.LANCZOS).save(path, compress_level=1)
            n_pixels = size[0] * size[1]
            seconds, peak = compress(path)
            cells = [
                f"{n_pixels / 1e6:.1f}",
                f"{seconds:.2f}",
                f"{peak / 2**20:,.0f} MiB",
                f"{peak / (3 * n_pixels):.1f}",
                "" if before is None else f"{(peak - before[1]) / (n_pixels - before[0]):.1f}",
            ]
            before = (n_pixels, peak)
            if have_pngquant:
                theirs, their_peak = run_measured(
                    [
                        "pngquant",
                        "16",
                        "--nofs",
                        "--force",
                        "-o",
                        str(Path(scratch) / "pq.png"),
                        str(path),
                    ]
                )
                cells += [f"{theirs:.2f}", f"{their_peak / 2**20:,.0f} MiB"]
            else:
                cells += ["not installed", ""]
            print("| " + " | ".join(cells) + " |", flush=True)
            path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
