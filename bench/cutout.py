"""The sandboxes' stand-in cut-out (not a test): quality and time per photo on the Shopify sandbox's
generated photos, whose product silhouette is known.

    .venv/bin/python bench/cutout.py [--photos 48] [--size 640x640] [--first-seed 5]

For each photo (seeds first-seed, first-seed + 37, …; JPEG and PNG alternately): IoU of the kept
product with the true silhouette, the share of the photo's background gone (cropped away or pure
white), and the CPU time (all threads) of the enhancement alone and with its PNG encoding, as
tests/unit/test_cutout_quality.py measures them (its thresholds: IoU >= 0.9, background gone >= 98 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from retouch.plugin.providers.aigenstudio.sandbox import enhance  # noqa: E402
from retouch.plugin.shopify.sandbox.photos import product_photo_and_mask  # noqa: E402
from test_cutout_quality import cutout_figures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--size", default="640x640")
    parser.add_argument("--first-seed", type=int, default=5)
    args = parser.parse_args()
    size = tuple(int(n) for n in args.size.split("x"))
    enhance.enhance(product_photo_and_mask(1, "JPEG", (64, 64))[0])  # OpenCV's first call sets up its pools
    ious, whites, cpu, cpu_png, wall = [], [], [], [], []
    for n in range(args.photos):
        data, truth = product_photo_and_mask(args.first_seed + 37 * n, "JPEG" if n % 2 else "PNG", size)
        iou, white, _, _ = cutout_figures(data, truth)
        ious.append(iou)
        whites.append(white)
        started, clock = time.process_time(), time.perf_counter()
        image = enhance.enhance(data)
        cpu.append(time.process_time() - started)
        wall.append(time.perf_counter() - clock)
        enhance.to_png(image)
        cpu_png.append(time.process_time() - started)
    print(
        f"{args.photos} photos {size[0]}x{size[1]}: IoU min {min(ious):.3f} mean {statistics.mean(ious):.3f}; "
        f"background gone min {min(whites):.2%} mean {statistics.mean(whites):.2%}"
    )
    print(
        f"ms per photo (CPU, all threads): enhancement median {1000 * statistics.median(cpu):.0f} "
        f"max {1000 * max(cpu):.0f}; with PNG encoding median {1000 * statistics.median(cpu_png):.0f}; "
        f"wall median {1000 * statistics.median(wall):.0f}"
    )


if __name__ == "__main__":
    main()
