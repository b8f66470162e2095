"""The web API with FastAPI's TestClient, and the page in a real headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from kmquant import read_image  # noqa: E402
from kmquant.web.app import create_app  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def png_bytes(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **options)
    return buffer.getvalue()


@pytest.fixture
def client():
    return TestClient(create_app(max_upload_bytes=2_000_000, max_pixels=1_000_000, max_images=3))


@pytest.fixture
def uploaded(client, small_photo):
    response = client.post("/api/images?name=photo.png", content=png_bytes(small_photo))
    assert response.status_code == 200
    return response.json()


def test_page_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="k-slider"' in page.text
    spec = client.get("/openapi.json").json()
    assert "/api/images/{image_id}/quantize" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_upload_then_requantize(client, uploaded, small_photo):
    assert uploaded["width"] == 64 and uploaded["height"] == 48 and not uploaded["has_alpha"]
    assert uploaded["notes"] == []
    answer = client.get(f"/api/images/{uploaded['id']}/quantize", params={"k": 8}).json()
    preview = read_image(base64.b64decode(answer["png"]))
    assert preview.shape == small_photo.shape
    assert len(np.unique(preview.reshape(-1, 3), axis=0)) == answer["n_colors"] <= 8
    assert answer["psnr"] > 20 and 0 < answer["ssim"] <= 1
    assert len(answer["palette"]) == answer["n_colors"]
    assert abs(sum(entry["share"] for entry in answer["palette"]) - 1) < 1e-3
    more = client.get(f"/api/images/{uploaded['id']}/quantize", params={"k": 32}).json()
    assert more["psnr"] > answer["psnr"]


def test_the_histogram_is_counted_once_per_image(client, uploaded, monkeypatch):
    import kmquant.web.app as web

    calls = []
    monkeypatch.setattr(web, "color_histogram", lambda *a: calls.append(a) or None)
    for k in (4, 8, 16):
        assert client.get(f"/api/images/{uploaded['id']}/quantize", params={"k": k}).is_success
    assert calls == []


def test_the_sliders_fast_answer_goes_by_cells(client, uploaded, small_photo):
    from kmquant import quantize

    answer = client.get(
        f"/api/images/{uploaded['id']}/quantize", params={"k": 8, "speed": "fast"}
    ).json()
    by_cells = quantize(small_photo, 8, speed="fast")  # no seed: the cell route has none
    assert sorted(entry["hex"] for entry in answer["palette"]) == sorted(
        "#{:02x}{:02x}{:02x}".format(*entry) for entry in by_cells.palette
    )


def test_downloads(client, uploaded):
    response = client.get(f"/api/images/{uploaded['id']}/result.png", params={"k": 6})
    assert response.headers["content-type"] == "image/png"
    assert "attachment" in response.headers["content-disposition"]
    image = Image.open(io.BytesIO(response.content))
    assert image.mode == "P" and len(image.getcolors()) <= 6
    palette = client.get(f"/api/images/{uploaded['id']}/palette", params={"k": 6}).json()
    assert len(palette["colors"]) == 6
    gpl = client.get(f"/api/images/{uploaded['id']}/palette", params={"k": 6, "format": "gpl"})
    assert gpl.text.startswith("GIMP Palette")
    original = client.get(f"/api/images/{uploaded['id']}/original.png")
    assert read_image(original.content).shape == (48, 64, 3)


def test_sample_and_transparency(client, sample_image):
    assert client.post("/api/images/sample").json()["width"] == 768
    rgba = np.dstack([sample_image[:40, :40], np.full((40, 40), 255, np.uint8)])
    rgba[:10, :, 3] = 0
    info = client.post("/api/images?name=a.png", content=png_bytes(rgba)).json()
    assert info["has_alpha"]
    answer = client.get(f"/api/images/{info['id']}/quantize", params={"k": 8}).json()
    assert read_image(base64.b64decode(answer["png"])).shape == (40, 40, 4)


def test_an_animation_uploads_its_first_frame_with_a_note(client, small_photo):
    buffer = io.BytesIO()
    first, second = Image.fromarray(small_photo), Image.fromarray(255 - small_photo)
    first.save(buffer, "GIF", save_all=True, append_images=[second])
    info = client.post("/api/images?name=moving.gif", content=buffer.getvalue()).json()
    assert info["notes"] == ["the upload has 2 frames; only the first is read"]
    original = read_image(client.get(f"/api/images/{info['id']}/original.png").content)
    buffer.seek(0)
    with Image.open(buffer) as animation:
        np.testing.assert_array_equal(original, np.asarray(animation.convert("RGB")))


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"k": 0}, "k"),
        ({"k": 300}, "k"),
        ({"k": "x"}, "k"),
        ({"space": "cmyk"}, "space"),
        ({"dither": "sideways"}, "dither"),
        ({"strength": 2}, "strength"),
    ],
)
def test_bad_parameters_get_400_with_a_message(client, uploaded, params, fragment):
    response = client.get(f"/api/images/{uploaded['id']}/quantize", params=params)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"bad parameter {fragment}")


def test_bad_uploads(client, sample_image):
    assert client.post("/api/images", content=b"not an image").status_code == 400
    truncated = png_bytes(sample_image)[:5000]
    response = client.post("/api/images", content=truncated)
    assert response.status_code == 400 and "truncated" in response.json()["detail"]
    assert client.post("/api/images", content=b"").status_code == 400
    too_big = client.post("/api/images", content=b"\0" * 2_000_001)
    assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]
    # 1,500 x 1,000 pixels of one colour: a tiny file, but over the 1 MP limit.
    bomb = png_bytes(np.zeros((1000, 1500, 3), np.uint8), optimize=True)
    assert len(bomb) < 2_000_000
    response = client.post("/api/images", content=bomb)
    assert response.status_code == 400 and "more than the limit" in response.json()["detail"]


def test_unknown_ids_and_paths_never_touch_the_disk(client):
    for image_id in ("nope", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        response = client.get(f"/api/images/{image_id}/quantize")
        assert response.status_code in (404, 400)
    assert client.get("/api/images/../../etc/passwd").status_code == 404


def test_store_evicts_the_least_recently_used(client, small_photo):
    ids = [
        client.post("/api/images", content=png_bytes(small_photo)).json()["id"] for _ in range(4)
    ]
    assert client.get(f"/api/images/{ids[0]}/quantize").status_code == 404
    assert client.get(f"/api/images/{ids[3]}/quantize").status_code == 200
    assert len(client.app.state.store) == 3


# ------------------------------------------------------------------------ a real browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def live_server():
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_page_in_headless_chromium(live_server, tmp_path, small_photo):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (scripts/install-browser.sh installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    fixture = tmp_path / "fixture.png"
    fixture.write_bytes(png_bytes(np.ascontiguousarray(small_photo)))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        page = browser.new_page(accept_downloads=True)
        page.goto(live_server)
        page.set_input_files("#file-input", str(fixture))
        page.wait_for_function("document.querySelector('#psnr').textContent.includes('dB')")
        page.wait_for_function("document.querySelector('#preview').dataset.speed === 'default'")
        first_psnr = page.text_content("#psnr")
        first_src = page.get_attribute("#preview", "src")

        page.eval_on_selector(
            "#k-slider", "s => { s.value = 48; s.dispatchEvent(new Event('input')); }"
        )
        page.wait_for_function(
            "document.querySelector('#preview').dataset.k === '48' && "
            "document.querySelector('#preview').dataset.speed === 'default'"
        )
        assert page.text_content("#psnr") != first_psnr
        assert page.get_attribute("#preview", "src") != first_src
        assert page.text_content("#k-value") == "48"

        with page.expect_download() as download_info:
            page.click("#download-png")
        downloaded = tmp_path / "download.png"
        download_info.value.save_as(downloaded)
        colours = np.unique(read_image(downloaded).reshape(-1, 3), axis=0)
        assert 1 < len(colours) <= 48
        page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)

        page.set_input_files(
            "#file-input",
            {"name": "bad.png", "mimeType": "image/png", "buffer": b"not an image at all"},
        )
        page.wait_for_function("document.querySelector('#error').textContent.includes('400')")
        assert "not an image" in page.text_content("#error")
        browser.close()
    assert json.loads(json.dumps({"ok": True}))["ok"]
