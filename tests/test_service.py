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


def start_server(catalogue, *options: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`singerid serve` as a real process on a free loopback port → (process, base URL) once /health answers."""
    port = _free_port()
    cmd = [sys.executable, "-m", "singerid.cli", "serve", "--catalogue", str(catalogue), "--port", str(port),
           "--token", TOKEN, "--threads", "1", *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_catalogue(root, synth_catalogue, singers: int | None = None, model=None):
    import pandas as pd

    from singerid.catalogue import Catalogue
    from singerid.models import create_model, save_model

    ckpt = save_model(root / "ck", model if model is not None else create_model("tiny", seed=0))
    t = pd.read_csv(synth_catalogue)
    t["path"] = [str(synth_catalogue.parent / p) for p in t["vocals_path"]]
    t["stem"] = "vocals"
    if singers is not None:
        t = t[t["singer"].isin(sorted(set(t["singer"]))[:singers])]
    Catalogue.create(root / "cat", checkpoint=str(ckpt), separate="none").enroll(t[["path", "singer", "song", "stem"]],
                                                                                progress=False)
    return root / "cat", t


@pytest.fixture(scope="module")
def server(tmp_path_factory, synth_catalogue):
    root = tmp_path_factory.mktemp("svc")
    cat, t = make_catalogue(root, synth_catalogue)
    proc, url = start_server(cat, "--max-upload-mb", "1", "--max-seconds", "20", "--read-timeout", "2",
                             "--header-timeout", "2", "--request-timeout", "6")
    yield {"url": url, "t": t, "root": root, "cat": cat, "proc": proc}
    stop(proc)


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
        assert decision.split(":")[0] in ("Match", "Possible match") or decision.startswith("Unknown")
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
        synthetic = page.inner_text("#synthetic")  # the detector's verdict, or the note saying how to install one
        assert synthetic.startswith("Synthetic voice? ") or "train-detector" in synthetic
        browser.close()


# ---------------------------------------------------------------------------------------------- hostile input corpus
def _tone(seconds, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _flac_declaring(path, total):
    sf.write(path, _tone(3.0), SR, format="FLAC")
    b = bytearray(path.read_bytes())
    v = int.from_bytes(b[18:26], "big")
    b[18:26] = ((v & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    path.write_bytes(bytes(b))


def _make_bad(kind: str, folder):
    """One bad input of each kind → (file, HTTP status)."""
    p = folder / {"text as mp3": "song.mp3", "truncated ogg": "song.ogg", "claims 10 h": "song.flac"}.get(kind, "song.wav")
    if kind == "empty":
        p.write_bytes(b"")
        return p, 400
    if kind == "text as mp3":
        p.write_bytes(b"\xff\xfb" + b"hello world" * 1000)
        return p, 415
    if kind == "truncated wav":
        sf.write(p, _tone(7.0), SR)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    elif kind == "too short":
        sf.write(p, _tone(0.2), SR)
    elif kind == "silent":
        sf.write(p, np.zeros(3 * SR, np.float32), SR)
    elif kind == "constant DC":
        sf.write(p, np.full(3 * SR, 0.5, np.float32), SR)
    elif kind == "NaN":
        x = _tone(2.0)
        x[100] = np.nan
        sf.write(p, x, SR, subtype="FLOAT")
    elif kind == "1-Hz rate":
        sf.write(p, _tone(2.0)[:2000], 1)
    elif kind == "truncated ogg":
        sf.write(p, _tone(8.0) + 0.01 * np.random.default_rng(0).standard_normal(8 * SR).astype(np.float32), SR,
                 format="OGG")
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "claims 10 h":
        _flac_declaring(p, 10 * 3600 * SR)
    return p, 422


BAD_KINDS = ["empty", "text as mp3", "truncated wav", "too short", "silent", "constant DC", "NaN", "1-Hz rate",
             "truncated ogg", "claims 10 h"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_corpus_cli_and_http(server, tmp_path, capfd, kind):
    from singerid.cli import main

    path, status = _make_bad(kind, tmp_path)
    capfd.readouterr()
    assert main(["identify", str(path), "--catalogue", str(server["cat"])]) == 2, kind
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("singerid identify: error: "), err
    with open(path, "rb") as fh:
        r = httpx.post(server["url"] + "/identify", files={"file": (path.name, fh)}, timeout=60)
    assert r.status_code == status, (kind, r.text)
    assert list(r.json()) == ["error"] and r.json()["error"].startswith(path.name + ":"), r.text
    assert "/" not in r.json()["error"], r.text  # the client's name and a reason, no server path
    assert _temp_files(server) == []


def _temp_files(server) -> list:
    tmp = server["cat"] / "tmp"
    return [p for p in tmp.rglob("*") if p.is_file()] if tmp.exists() else []


# ---------------------------------------------------------------------------------------------- the HTTP surface
ABSOLUTE = __import__("re").compile(r"(?<![\w.:/])/(?:tmp|home|root|work|var|usr|mnt|private|srv|opt|data)/")


def _scan(r, server) -> None:
    text = r.text
    assert str(server["root"]) not in text and "/tmp/" not in text and not ABSOLUTE.search(text), (r.url, text[:300])
    if r.status_code >= 400:
        assert list(r.json()) == ["error"] and isinstance(r.json()["error"], str), (r.url, r.text)


def test_no_response_holds_a_server_path(server, tmp_path):
    url, auth = server["url"], {"Authorization": f"Bearer {TOKEN}"}
    song = server["t"]["path"].iloc[0]
    rs = [httpx.get(url + p) for p in ("/", "/health", "/singers", "/nope", "/singers/x")]
    with open(song, "rb") as fh:
        rs.append(httpx.post(url + "/identify", files={"file": ("a.flac", fh)}, data={"top": "10"}, timeout=60))
    d = rs[-1].json()
    assert rs[-1].status_code == 200 and d["nearest_tracks"], d
    assert all(set(n) >= {"track_id", "singer", "song", "score"} and "path" not in n for n in d["nearest_tracks"])
    for kind in ("text as mp3", "truncated wav"):
        path, _ = _make_bad(kind, tmp_path)
        with open(path, "rb") as fh:
            rs.append(httpx.post(url + "/identify", files={"file": (path.name, fh)}, timeout=60))
    rs.append(httpx.post(url + "/identify", data={"top": "x"}))
    rs.append(httpx.post(url + "/identify", files={"file": ("", b"RIFF raw bytes here")}))
    rs.append(httpx.post(url + "/enroll", data={"singer": "s"}, files={"files": ("a.wav", b"x")}))
    with open(path, "rb") as fh:
        rs.append(httpx.post(url + "/enroll", data={"singer": "s"}, files={"files": ("bad.wav", fh)}, headers=auth))
    with open(_wav(tmp_path / "ok.wav", 7.0, 300.0), "rb") as fh:
        rs.append(httpx.post(url + "/enroll", data={"singer": "scan"}, files={"files": ("ok.wav", fh)}, headers=auth,
                             timeout=60))
    assert rs[-1].status_code == 200 and rs[-1].json()["enrolled"] == 1, rs[-1].text
    rs.append(httpx.delete(url + "/singers/scan", headers=auth))
    rs.append(httpx.delete(url + "/singers/scan", headers=auth))
    rs.append(httpx.put(url + "/identify"))
    assert {r.status_code for r in rs} >= {200, 401, 404, 405, 415, 422}
    for r in rs:
        _scan(r, server)
    assert "RIFF raw bytes" not in rs[-8].text


@pytest.mark.parametrize("name", ["..", ".", "", "x" * 300 + ".wav"])
def test_odd_file_names_get_a_clean_4xx_and_leave_nothing(server, tmp_path, name):
    data = _wav(tmp_path / "a.wav").read_bytes()
    before = sorted((server["cat"] / "uploads").glob("*")) if (server["cat"] / "uploads").exists() else []
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for r in (httpx.post(server["url"] + "/identify", files={"file": (name, data)}, timeout=60),
              httpx.post(server["url"] + "/enroll", data={"singer": "odd"}, files={"files": (name, data)}, headers=auth,
                         timeout=60)):
        assert 400 <= r.status_code < 500 and list(r.json()) == ["error"], (name, r.status_code, r.text)
        assert "RIFF" not in r.text
    assert _temp_files(server) == []
    after = sorted((server["cat"] / "uploads").glob("*")) if (server["cat"] / "uploads").exists() else []
    assert after == before


def test_same_name_twice_in_one_enrol_and_a_singer_with_a_slash(server, tmp_path):
    url, auth = server["url"], {"Authorization": f"Bearer {TOKEN}"}
    a, b = _wav(tmp_path / "a.wav", 7.0, 250.0).read_bytes(), _wav(tmp_path / "b.wav", 7.0, 390.0).read_bytes()
    r = httpx.post(url + "/enroll", data={"singer": "a/b"}, files=[("files", ("take.wav", a)), ("files", ("take.wav", b))],
                   headers=auth, timeout=60)
    assert r.status_code == 200 and r.json()["enrolled"] == 2, r.text
    r = httpx.post(url + "/enroll", data={"singer": "a/b"}, files=[("files", ("again.wav", a))], headers=auth, timeout=60)
    assert r.json().get("enrolled") == 0 and r.json()["skipped"] == 1, r.text  # same content: enrolled once
    assert {"singer": "a/b", "tracks": 2} in httpx.get(url + "/singers").json()["singers"]
    r = httpx.delete(url + "/singers/a/b", headers=auth)
    assert r.status_code == 200 and r.json()["removed_tracks"] == 2, r.text
    assert "a/b" not in {s["singer"] for s in httpx.get(url + "/singers").json()["singers"]}


def test_identify_sees_a_removal_made_by_another_process(tmp_path, synth_catalogue):
    from singerid.cli import main

    cat, t = make_catalogue(tmp_path, synth_catalogue)
    proc, url = start_server(cat)
    try:
        song = t[t["singer"] == "singer00"]["path"].iloc[0]

        def singers_named():
            with open(song, "rb") as fh:
                r = httpx.post(url + "/identify", files={"file": ("q.flac", fh)}, data={"top": "50"}, timeout=60)
            return {c["singer"] for c in r.json()["candidates"]}

        assert "singer00" in singers_named()
        assert main(["remove-singer", "singer00", "--catalogue", str(cat)]) == 0
        assert "singer00" not in singers_named()
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------- load and crashes
def _raw(url: str, head: bytes, body: bytes = b"", wait: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        s.sendall(head + body)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return data


def test_upload_limit_is_enforced_while_streaming(server):
    t0 = time.perf_counter()
    head = (b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10737418240\r\n\r\n")
    reply = _raw(server["url"], head)  # 10 GB declared, nothing sent: refused before reading
    assert reply.startswith(b"HTTP/1.1 413") and b'"error"' in reply and time.perf_counter() - t0 < 5
    sent = 0

    def body():
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(400):  # 400 x 64 KiB = 25 MB offered against a 1 MB limit, without a Content-Length
            sent += 65536
            yield b"\0" * 65536

    try:
        r = httpx.post(server["url"] + "/identify", content=body(),
                       headers={"Content-Type": "multipart/form-data; boundary=b"}, timeout=30)
        assert r.status_code == 413 and list(r.json()) == ["error"], r.text
    except httpx.TransportError:
        pass  # the server answered 413 and closed while we were still sending
    assert sent < 20 * 2**20  # it stopped reading near the limit
    assert _temp_files(server) == []
    assert httpx.get(server["url"] + "/health").status_code == 200


def test_a_stalled_upload_gets_408(server):
    head = (b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n")
    t0 = time.perf_counter()
    reply = _raw(server["url"], head, b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF")
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.perf_counter() - t0 < 8  # --read-timeout 2
    assert _temp_files(server) == []


def test_a_timed_out_job_keeps_its_slot_until_its_work_ends(tmp_path, synth_catalogue):
    """The work must surely outlive the timeout and the next request, and the timeout surely outlive decoding (a job
    timed out before the model starts is cancelled at once): a wide, deep AST (~0.3-2 s for a minute of audio on a
    CPU, against ~5 ms of decoding and a 0.3-s timeout). With the tiny model the work ended within ms of the 504."""
    import dataclasses

    from singerid.models import create_model, get_config

    tiny = get_config("tiny")
    slow = dataclasses.replace(tiny, name="slow", encoder={**tiny.encoder, "dim": 384, "depth": 12})
    cat, t = make_catalogue(tmp_path, synth_catalogue, singers=2, model=create_model(slow, seed=0))
    proc, url = start_server(cat, "--timeout", "0.3", "--max-queue", "1")
    try:
        data = _wav(tmp_path / "q.wav", 60.0).read_bytes()
        r = httpx.post(url + "/identify", files={"file": ("q.wav", data)}, timeout=60)
        assert r.status_code == 504 and list(r.json()) == ["error"]
        r = httpx.post(url + "/identify", files={"file": ("q.wav", data)}, timeout=60)
        assert r.status_code == 503, r.text  # the first job is still computing: its slot is not free yet
        for _ in range(300):  # and it is freed once that work ends
            if httpx.get(url + "/health").json()["jobs"]["busy"] == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("slot never freed")
        assert not list((cat / "tmp").rglob("*.wav"))
    finally:
        stop(proc)


def test_kill_9_during_enrol_then_retry_leaves_no_duplicates_or_orphans(tmp_path, synth_catalogue):
    import threading

    cat, t = make_catalogue(tmp_path, synth_catalogue, singers=2)
    files = [("files", (f"take{i}.wav", _wav(tmp_path / f"{i}.wav", 7.0, 200.0 + 60 * i).read_bytes())) for i in range(3)]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    proc, url = start_server(cat, "--read-timeout", "60")
    started = threading.Event()

    def slow_body():
        yield b'--b\r\nContent-Disposition: form-data; name="singer"\r\n\r\nkilled\r\n'
        for name, data in ((f[1][0], f[1][1]) for f in files):
            yield f'--b\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'.encode()
            for i in range(0, len(data), 32768):
                started.set()
                time.sleep(0.05)
                yield data[i : i + 32768]
            yield b"\r\n"
        yield b"--b--\r\n"

    def post():
        try:
            httpx.post(url + "/enroll", content=slow_body(), timeout=60,
                       headers={**auth, "Content-Type": "multipart/form-data; boundary=b"})
        except httpx.TransportError:
            pass

    th = threading.Thread(target=post)
    th.start()
    started.wait(30)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    th.join(60)
    proc, url = start_server(cat)
    try:
        for _ in range(2):  # the retry, and a retry of the retry
            r = httpx.post(url + "/enroll", data={"singer": "killed"}, files=files, headers=auth, timeout=120)
            assert r.status_code == 200, r.text
        singers = {s["singer"]: s["tracks"] for s in httpx.get(url + "/singers").json()["singers"]}
        assert singers["killed"] == 3
    finally:
        stop(proc)
    from singerid.catalogue.store import Store

    store = Store(cat)
    kept = [p for p in (cat / "uploads").iterdir()]
    assert len(kept) == 3 and all(store.has_file(str(p)) for p in kept)
    assert not [p for p in (cat / "tmp").rglob("*") if p.is_file()]


def test_worker_processes_share_the_catalogue(tmp_path, synth_catalogue):
    cat, t = make_catalogue(tmp_path, synth_catalogue, singers=3)
    proc, url = start_server(cat, "--workers", "2")
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        song = t["path"].iloc[0]
        for _ in range(4):  # requests land on either worker; a removal by one is seen by the other
            with open(song, "rb") as fh:
                assert httpx.post(url + "/identify", files={"file": ("q.flac", fh)}, timeout=60).status_code == 200
        assert httpx.delete(url + "/singers/singer02", headers=auth).status_code == 200
        for _ in range(4):
            with open(song, "rb") as fh:
                r = httpx.post(url + "/identify", files={"file": ("q.flac", fh)}, data={"top": "50"}, timeout=60)
            assert "singer02" not in {c["singer"] for c in r.json()["candidates"]}
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------------- issue 32: the edge
def test_token_compared_as_bytes_and_the_scheme_in_any_case(server):
    head = b"DELETE /singers/nobody-here HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: close\r\n\r\n"
    reply = _raw(server["url"], head % "Bearer s3cret-tökén".encode())  # non-ASCII: was a 500
    assert reply.startswith(b"HTTP/1.1 401") and b'"error"' in reply, reply[:300]
    for scheme in (b"bearer", b"BEARER"):
        reply = _raw(server["url"], head % (scheme + b" " + TOKEN.encode()))
        assert reply.startswith(b"HTTP/1.1 404"), reply[:300]  # authorised; the singer is not there


def test_an_unauthenticated_enrol_is_refused_before_its_body_is_read(server):
    head = (b"POST /enroll HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10000000\r\n\r\n")  # under the enrol limit; no body sent
    t0 = time.perf_counter()
    reply = _raw(server["url"], head, b"--b\r\n")
    assert reply.startswith(b"HTTP/1.1 401") and b'"error"' in reply, reply[:300]  # was a 408 after waiting for it
    assert time.perf_counter() - t0 < 1.5
    assert _temp_files(server) == []


def test_a_negative_content_length_gets_a_json_400(server):
    reply = _raw(server["url"], b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and b"application/json" in reply and b'{"error"' in reply, reply[:300]


def _drip(url: str, parts: list[bytes], every: float) -> tuple[bytes, float]:
    """Send `parts` one by one, `every` s apart, until the server answers or closes → (reply, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    t0 = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.settimeout(every)
        for part in parts:
            try:
                s.sendall(part)
                if data := s.recv(65536):
                    return data, time.perf_counter() - t0
                return b"", time.perf_counter() - t0  # closed
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return b"", time.perf_counter() - t0
    return b"still open", time.perf_counter() - t0


def test_slow_request_headers_and_bodies_are_cut_off(server):
    head = b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    reply, took = _drip(server["url"], [head[i:i + 1] for i in range(len(head))], 0.5)  # --header-timeout 2
    assert reply != b"still open" and took < 5, (reply[:200], took)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:200]
    body = head + b"Content-Length: 100000\r\n\r\n" + (b'--b\r\nContent-Disposition: form-data; name="file"; '
                                                          b'filename="a.wav"\r\n\r\nRIFF')
    reply, took = _drip(server["url"], [body] + [b"x"] * 40, 1.0)  # a byte a second, under --read-timeout 2
    assert reply.startswith(b"HTTP/1.1 408") and took < 10, (reply[:200], took)  # --request-timeout 6
    assert _temp_files(server) == []


def test_removing_a_singer_removes_the_audio_kept_for_them(server, tmp_path):
    url, auth = server["url"], {"Authorization": f"Bearer {TOKEN}"}
    kept = server["cat"] / "uploads"
    before = set(kept.glob("*")) if kept.is_dir() else set()
    with open(_wav(tmp_path / "gone.wav", 7.0, 470.0), "rb") as fh:
        r = httpx.post(url + "/enroll", data={"singer": "to-be-gone"}, files={"files": ("gone.wav", fh)}, headers=auth,
                       timeout=60)
    assert r.status_code == 200 and r.json()["enrolled"] == 1, r.text
    assert len(set(kept.glob("*")) - before) == 1
    assert httpx.delete(url + "/singers/to-be-gone", headers=auth).status_code == 200
    assert set(kept.glob("*")) == before  # gone with the singer, not at the next start
