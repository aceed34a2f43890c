"""The HTTP service against a real uvicorn server on loopback, and the web page in headless Chromium."""
from __future__ import annotations

import concurrent.futures as cf
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx")

SR = 16000
TOKEN = "s3cret-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, synth_catalogue):
    import pandas as pd

    from singerid.catalogue import Catalogue
    from singerid.models import create_model, save_model

    root = tmp_path_factory.mktemp("svc")
    ckpt = save_model(root / "ck", create_model("tiny", seed=0))
    t = pd.read_csv(synth_catalogue)
    t["path"] = [str(synth_catalogue.parent / p) for p in t["vocals_path"]]
    t["stem"] = "vocals"
    Catalogue.create(root / "cat", checkpoint=str(ckpt), separate="none").enroll(t[["path", "singer", "song", "stem"]], progress=False)
    port = _free_port()
    cmd = [sys.executable, "-m", "singerid.cli", "serve", "--catalogue", str(root / "cat"), "--port", str(port),
           "--token", TOKEN, "--max-upload-mb", "1", "--max-seconds", "20"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("server did not start")
    yield {"url": url, "t": t, "root": root}
    proc.terminate()
    proc.wait(10)


def _wav(path, seconds=7.0, f=220.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.3 * np.sin(2 * np.pi * 5 * t))).astype(np.float32), sr)
    return path


def test_health_singers_identify(server):
    h = httpx.get(server["url"] + "/health").json()
    assert h["status"] == "ok" and h["singers"] == 6
    assert len(httpx.get(server["url"] + "/singers").json()["singers"]) == 6
    with open(server["t"]["path"].iloc[0], "rb") as fh:
        r = httpx.post(server["url"] + "/identify", files={"file": ("a.flac", fh, "audio/flac")}, timeout=60)
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) >= {"decision", "candidates", "windows", "caveat"} and d["path"] == "a.flac"


def test_every_bad_upload_gets_a_4xx_with_a_reason(server, tmp_path):
    cases = {}
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.wav", 400)
    (tmp_path / "text.mp3").write_text("not audio\n" * 100)
    cases["not audio"] = (tmp_path / "text.mp3", 415)
    data = _wav(tmp_path / "full.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 3])
    cases["truncated"] = (tmp_path / "trunc.wav", 422)
    cases["too short"] = (_wav(tmp_path / "short.wav", 0.2), 422)
    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    cases["silent"] = (tmp_path / "silent.wav", 422)
    cases["too large"] = (_wav(tmp_path / "big.wav", 40.0), 413)  # > 1 MB
    sf.write(tmp_path / "long.flac", np.tile(np.sin(np.arange(SR) / 3).astype(np.float32) * 0.3, 30), SR)
    cases["too long"] = (tmp_path / "long.flac", 422)  # 30 s > --max-seconds 20, < 1 MB as FLAC
    for name, (path, status) in cases.items():
        with open(path, "rb") as fh:
            r = httpx.post(server["url"] + "/identify", files={"file": (path.name, fh)}, timeout=60)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"], name
    r = httpx.post(server["url"] + "/identify", data={"top": "3"}, timeout=10)  # no file field
    assert r.status_code == 422
    assert httpx.get(server["url"] + "/health").status_code == 200  # still alive


def test_concurrent_requests_are_served(server):
    path = server["t"]["path"].iloc[1]

    def one(_):
        with open(path, "rb") as fh:
            return httpx.post(server["url"] + "/identify", files={"file": ("x.flac", fh)}, timeout=120).status_code

    with cf.ThreadPoolExecutor(12) as ex:
        codes = list(ex.map(one, range(24)))
    assert set(codes) <= {200, 503} and codes.count(200) >= 8
    assert httpx.get(server["url"] + "/health").status_code == 200


def test_enrol_and_remove_need_the_token(server, tmp_path):
    url = server["url"]
    f = _wav(tmp_path / "new.wav", 7.0, 330.0)
    with open(f, "rb") as fh:
        assert httpx.post(url + "/enroll", data={"singer": "newbie"}, files={"files": ("new.wav", fh)}).status_code == 401
    with open(f, "rb") as fh:
        r = httpx.post(url + "/enroll", data={"singer": "newbie"}, files={"files": ("new.wav", fh)},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert r.status_code == 200 and r.json()["enrolled"] == 1
    assert "newbie" in {s["singer"] for s in httpx.get(url + "/singers").json()["singers"]}
    assert httpx.delete(url + "/singers/newbie").status_code == 401
    assert httpx.delete(url + "/singers/newbie", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert httpx.delete(url + "/singers/newbie", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_web_page_upload_shows_results_in_a_real_browser(server, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("Debian chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server["url"] + "/")
        assert "never a verdict" in page.inner_text("#caveat")
        page.set_input_files("#file", server["t"]["path"].iloc[2])
        page.click("#go")
        page.wait_for_selector("#result:not([hidden])", timeout=60000)
        decision = page.inner_text("#decision")
        assert decision.startswith("Closest enrolled singer") or decision.startswith("Unknown")
        assert page.locator("#candidates tbody tr").count() == 5
        assert page.locator("#timeline .seg").count() >= 1
        page.screenshot(path=str(tmp_path / "page.png"))
        # a bad upload shows the server's reason
        bad = tmp_path / "bad.wav"
        bad.write_text("nope" * 100)
        page.set_input_files("#file", str(bad))
        page.click("#go")
        page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30000)
        assert "bad.wav" in page.inner_text("#status")
        browser.close()
