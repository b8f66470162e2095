"""How live is the page? Server time of one re-quantization of a 1-megapixel photo.

    python benchmarks/web_latency.py

The bundled photo is upscaled to 1224 x 816 (1.0 MP) and uploaded once through the API (its
histogram is counted then); each K is then requested 7 times at the speed the page uses while a
slider moves ("fast") and once it rests ("default"). Medians of the wall time of the whole
request (quantize, PNG, metrics, JSON) are printed, in the same process, with FastAPI's
TestClient (no network).
"""

from __future__ import annotations

import io
import statistics
import time

from fastapi.testclient import TestClient
from PIL import Image

import kmquant
from kmquant.web.app import create_app


def main() -> int:
    photo = Image.fromarray(kmquant.read_image(kmquant.sample_image_path()))
    big = photo.resize((1224, 816), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    client = TestClient(create_app())
    started = time.perf_counter()
    image_id = client.post("/api/images?name=1mp.png", content=buffer.getvalue()).json()["id"]
    print(
        f"upload + decode + histogram of {1224 * 816:,} pixels: "
        f"{time.perf_counter() - started:.3f} s (once per image)"
    )
    client.get(f"/api/images/{image_id}/quantize", params={"k": 8, "speed": "fast"})
    for k in (16, 64, 256):
        for speed in ("fast", "default"):
            times = []
            for _ in range(7):
                started = time.perf_counter()
                answer = client.get(
                    f"/api/images/{image_id}/quantize", params={"k": k, "speed": speed}
                )
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200
            print(
                f"K={k:3d} speed={speed:7s}: median {1000 * statistics.median(times):6.1f} ms "
                f"per request (PSNR {answer.json()['psnr']:.2f} dB)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
