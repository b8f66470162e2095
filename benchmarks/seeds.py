"""kmquant against scikit-learn's k-means on all pixels, over several seeds on each side.

    python benchmarks/seeds.py                                   # bundled sample, K = 64
    python benchmarks/seeds.py ../shared/corpus/photos -k 64 --seeds 8

compare.py runs each seeded method once (seed 0), so whether kmquant beats scikit-learn's
``KMeans(K, n_init=1)`` on all pixels on a given image rests on one draw from each. This runs
kmquant with seeds 0 to n - 1 and scikit-learn with ``random_state`` 0 to n - 1 on every image
and prints, per image, each side's median and extreme MSE (as in compare.py: over pixels and
RGB channels, the palette rounded to uint8), the share of the n x n pairs of seeds in which
kmquant's MSE is at most scikit-learn's, and how many of kmquant's seeds beat scikit-learn's
seed 0, the run compare.py compares against. No time is taken: the point is the spread of
results, not speed.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import kmquant
from compare import list_images
from kmquant.palette import centers_to_palette


def sklearn_errors(image: np.ndarray, k: int, n_seeds: int) -> np.ndarray:
    """MSE of ``KMeans(k, n_init=1, random_state=seed)`` on the pixels, seed by seed."""
    from sklearn.cluster import KMeans

    pixels = image.reshape(-1, 3).astype(np.float64)
    errors = []
    for seed in range(n_seeds):
        model = KMeans(k, n_init=1, random_state=seed).fit(pixels)
        output = centers_to_palette(model.cluster_centers_)[model.labels_]
        errors.append(np.mean((pixels - output.astype(np.float64)) ** 2))
    return np.array(errors)


def kmquant_errors(image: np.ndarray, k: int, n_seeds: int) -> np.ndarray:
    """MSE of ``kmquant.quantize(image, k, rng=seed)``, seed by seed."""
    pixels = image.astype(np.float64)
    return np.array(
        [
            np.mean((pixels - kmquant.quantize(image, k, rng=seed).to_image()) ** 2)
            for seed in range(n_seeds)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="images or folders (default: bundled sample)")
    parser.add_argument("-k", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=8, help="seeds on each side (0 to n - 1)")
    args = parser.parse_args(argv)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("scikit-learn is not installed (pip install scikit-learn)", file=sys.stderr)
        return 1
    images = list_images(args.inputs) or [kmquant.sample_image_path()]
    print(f"K = {args.k}, seeds 0 to {args.seeds - 1} on each side; MSE median (min..max)\n")
    print("| image | kmquant | scikit-learn | pairs kmquant <= | kmquant seeds <= sklearn seed 0 |")
    print("|---|---|---|---|---|")
    shares, lower_medians, beat_first = [], 0, 0
    for path in images:
        image = kmquant.read_image(path)[:, :, :3]
        ours = kmquant_errors(image, args.k, args.seeds)
        theirs = sklearn_errors(image, args.k, args.seeds)
        share = float(np.mean(ours[:, None] <= theirs[None, :]))
        shares.append(share)
        lower_medians += np.median(ours) < np.median(theirs)
        beating = int(np.sum(ours <= theirs[0]))
        beat_first += beating
        print(
            f"| {path.name} | {np.median(ours):.3f} ({ours.min():.3f}..{ours.max():.3f}) | "
            f"{np.median(theirs):.3f} ({theirs.min():.3f}..{theirs.max():.3f}) | {share:.0%} | "
            f"{beating} of {args.seeds} |"
        )
    print(
        f"\nkmquant's median below scikit-learn's on {lower_medians} of {len(images)} images; "
        f"pairs won {min(shares):.0%} to {max(shares):.0%} an image, {np.mean(shares):.1%} "
        f"in all; kmquant at or below scikit-learn's seed 0 in {beat_first} of "
        f"{args.seeds * len(images)} runs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
