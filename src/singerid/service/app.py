"""HTTP service over a catalogue (FastAPI): identify uploads, list singers, enrol / remove behind a bearer token,
and the web page. Handlers are thin: they validate, call `Catalogue`, and turn bad input into 4xx JSON.

Limits: upload size (streamed, refused past the limit), audio duration, time per request, and a bounded queue of
identification jobs (503 when full), so concurrent clients never exhaust memory or crash the server.
"""

import asyncio
import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import CAVEAT
from ..audio import AudioError, load_audio

log = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    catalogue: str
    token: str | None = None  # bearer token for POST /enroll and DELETE /singers/{id}; None: those are disabled
    max_upload_mb: float = 50.0
    max_seconds: float = 15 * 60.0
    timeout_s: float = 120.0
    max_queue: int = 8  # identification jobs waiting or running
    device: str = "cpu"


def create_app(cfg: ServiceConfig):
    try:
        from fastapi import FastAPI, File, Form, Header, Request, UploadFile
        from fastapi.responses import HTMLResponse, JSONResponse
    except ImportError as e:
        raise ImportError("install singerid[service] for `serve` (fastapi, uvicorn, python-multipart)") from e

    from ..catalogue import Catalogue

    cat = Catalogue.open(cfg.catalogue, cfg.device)
    model_lock = threading.Lock()  # one embedding job at a time: bounded memory, no torch thread oversubscription
    slots = asyncio.Semaphore(cfg.max_queue)
    app = FastAPI(title="singerid", version="0.1.0", description=CAVEAT)

    def error(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"error": msg, "caveat": CAVEAT}, status_code=status)

    async def save_upload(upload: UploadFile) -> Path | JSONResponse:
        limit = int(cfg.max_upload_mb * 1024 * 1024)
        suffix = Path(upload.filename or "upload").suffix[:10]
        fd, tmp = tempfile.mkstemp(prefix="singerid-", suffix=suffix)
        size = 0
        with os.fdopen(fd, "wb") as fh:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    fh.close()
                    os.unlink(tmp)
                    return error(413, f"upload larger than {cfg.max_upload_mb:g} MB")
                fh.write(chunk)
        if size == 0:
            os.unlink(tmp)
            return error(400, "empty upload")
        return Path(tmp)

    def authorised(authorization: str | None) -> bool:
        if not cfg.token or not authorization or not authorization.startswith("Bearer "):
            return False
        return secrets.compare_digest(authorization[7:], cfg.token)

    def identify_file(path: Path, name: str, top: int) -> dict:
        wave = load_audio(path, max_seconds=cfg.max_seconds)
        with model_lock:
            r = cat.identify_wave(wave, top)
        r["path"] = name
        return r

    @app.get("/health")
    def health():
        return {"status": "ok", "singers": len(cat.singers()), "tracks": cat.store.count()}

    @app.get("/singers")
    def singers():
        return {"singers": cat.singers()}

    @app.post("/identify")
    async def identify(file: UploadFile = File(...), top: int = Form(5)):
        if not 1 <= top <= 50:
            return error(422, "top must be between 1 and 50")
        if slots.locked():
            return error(503, "server busy: too many identification requests, retry later")
        async with slots:
            saved = await save_upload(file)
            if isinstance(saved, JSONResponse):
                return saved
            try:
                return await asyncio.wait_for(asyncio.to_thread(identify_file, saved, file.filename or "upload", top),
                                              cfg.timeout_s)
            except AudioError as e:
                return error(415 if "not a readable" in e.reason or "no audio stream" in e.reason else 422,
                             f"{file.filename}: {e.reason}")
            except asyncio.TimeoutError:
                return error(504, f"identification took longer than {cfg.timeout_s:g} s")
            finally:
                saved.unlink(missing_ok=True)

    @app.post("/enroll")
    async def enroll(singer: str = Form(...), files: list[UploadFile] = File(...),
                     authorization: str | None = Header(None)):
        if not authorised(authorization):
            return error(401, "a valid bearer token is required to enrol")
        singer = singer.strip()
        if not singer or len(singer) > 200:
            return error(422, "singer must be 1-200 characters")
        import pandas as pd

        keep = Path(cfg.catalogue) / "uploads" / secrets.token_hex(4)
        keep.mkdir(parents=True, exist_ok=True)
        rows = []
        for f in files:
            saved = await save_upload(f)
            if isinstance(saved, JSONResponse):
                return saved
            target = keep / Path(f.filename or "upload").name
            os.replace(saved, target)
            try:
                load_audio(target, max_seconds=cfg.max_seconds)
            except AudioError as e:
                target.unlink(missing_ok=True)
                return error(422, f"{f.filename}: {e.reason}")
            rows.append({"path": str(target), "singer": singer, "song": target.name, "stem": "mixture"})

        def run():
            with model_lock:
                return cat.enroll(pd.DataFrame(rows), workers=0, progress=False)

        r = await asyncio.to_thread(run)
        return {"singer": singer, "enrolled": r["enrolled"], "errors": r["errors"]}

    @app.delete("/singers/{singer}")
    def remove(singer: str, authorization: str | None = Header(None)):
        if not authorised(authorization):
            return error(401, "a valid bearer token is required to remove singers")
        with model_lock:
            n = cat.remove_singer(singer)
        if not n:
            return error(404, f"singer {singer!r} is not in the catalogue")
        return {"singer": singer, "removed_tracks": n}

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    page = resources.files("singerid.service").joinpath("static", "index.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    return app


def serve(cfg: ServiceConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    try:
        import uvicorn
    except ImportError as e:
        raise ImportError("install singerid[service] for `serve` (fastapi, uvicorn, python-multipart)") from e
    uvicorn.run(create_app(cfg), host=host, port=port, log_level="info")
