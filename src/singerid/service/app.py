"""HTTP service over a catalogue (FastAPI): identify uploads, list singers, enrol / remove behind a bearer token,
and the web page. Handlers are thin: they validate, call `Catalogue`, and turn bad input into 4xx JSON.

- Every error is `{"error": "<reason>"}` (validation errors included); no response carries a path of the server's
  disk (enrolled tracks are named by singer, song and an opaque track id; uploads by their client file name).
- Limits: request body size (checked from Content-Length, then counted while streaming: nothing past the limit is
  written), a read timeout for stalled uploads, audio duration, time per request, and a bounded queue of
  identification jobs (503 when full). A job that times out answers 504 but keeps its queue slot until its work has
  really stopped (it is abandoned at the next stage boundary), so a flood of slow requests cannot pile up work.
- Each request first checks the catalogue's generation counter, so changes made by another process (`singerid
  remove-singer`, another worker's enrolment) are answered at once.
- Scale with worker processes (`serve --workers N`): each is a fresh process built by `app_from_env` from the JSON
  config in $SINGERID_SERVICE, and uses its share of the CPUs (`singerid.cpu.configure(threads, processes=N)`).
"""

import asyncio
import functools
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .. import CAVEAT, __version__
from ..audio import AudioError, load_audio
from ..data.manifest import kind_problem, singer_problem
from .limits import BodyLimit, bearer_ok
from .uploads import UploadArea, UploadError, display_name

log = logging.getLogger(__name__)

ENV = "SINGERID_SERVICE"  # JSON ServiceConfig handed to worker processes
MB = 1 << 20


@dataclass
class ServiceConfig:
    catalogue: str
    token: str | None = None  # bearer token for POST /enroll and DELETE /singers/{id}; None: those are disabled
    max_upload_mb: float = 50.0
    max_seconds: float = 15 * 60.0
    timeout_s: float = 120.0
    max_queue: int = 8  # identification jobs waiting or running, per worker process
    device: str = "cpu"
    read_timeout_s: float = 30.0  # longest pause between chunks of an upload
    request_timeout_s: float = 600.0  # longest time to receive a whole request body
    header_timeout_s: float = 10.0  # longest time to receive a request line and headers (`guard.GuardedH11Protocol`)
    max_files: int = 20  # files per POST /enroll
    workers: int = 1  # worker processes
    threads: int | None = None  # torch threads per worker (None: the CPU policy's share)


class _Cancelled(Exception):
    """A job abandoned after its request timed out."""


class Jobs:
    """Bounded identification jobs. A slot is held from the upload to the end of the work, also past a timeout."""

    def __init__(self, size: int):
        self.size, self.busy, self._lock = size, 0, threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.busy >= self.size:
                return False
            self.busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.busy -= 1


def create_app(cfg: ServiceConfig):
    try:
        from fastapi import FastAPI, File, Form, Header, Request, UploadFile
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse
        from starlette.exceptions import HTTPException
    except ImportError as e:
        raise ImportError("install singerid[service] for `serve` (fastapi, uvicorn, python-multipart)") from e

    from ..catalogue import Catalogue

    cat = Catalogue.open(cfg.catalogue, cfg.device)
    area = UploadArea(cfg.catalogue, int(cfg.max_upload_mb * MB))
    area.prune(cat.store.has_file)
    model_lock = threading.Lock()  # one embedding job at a time per process: bounded memory, no oversubscription
    jobs = Jobs(cfg.max_queue)
    pool = ThreadPoolExecutor(max(1, cfg.max_queue), thread_name_prefix="identify")  # no more threads than jobs
    _bound_malloc_arenas()
    app = FastAPI(title="singerid", version=__version__, description=CAVEAT)
    app.add_middleware(BodyLimit, limit=lambda path: _body_limit(cfg, path), read_timeout=cfg.read_timeout_s,
                       total_timeout=cfg.request_timeout_s, protected=_protected, token=cfg.token)

    def error(status: int, msg: str) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=status)

    def authorise(authorization: str | None, what: str) -> None:  # BodyLimit checked it already, before the body
        if not bearer_ok(authorization, cfg.token):
            raise UploadError(401, f"a valid bearer token is required to {what}")

    def audio_error(name: str, e: AudioError) -> UploadError:
        unreadable = "not a readable" in e.reason or "no audio stream" in e.reason
        return UploadError(415 if unreadable else 422, f"{name}: {e.reason}")

    def identify_job(path: Path, name: str, top: int, cancel: threading.Event) -> dict:
        try:
            wave = load_audio(path, max_seconds=cfg.max_seconds)
        except AudioError as e:
            raise audio_error(name, e) from None
        with model_lock:
            if cancel.is_set():  # timed out while decoding or waiting for the model: no work for nobody
                raise _Cancelled
            r = cat.identify_wave(wave, top)
        return {**r, "path": name}

    @app.get("/health")
    def health():
        return {"status": "ok", "version": __version__, "singers": len(cat.singers()), "tracks": cat.store.count(),
                "jobs": {"busy": jobs.busy, "size": jobs.size}, "pid": os.getpid()}

    @app.get("/singers")
    def singers():
        return {"singers": cat.singers()}

    @app.post("/identify")
    async def identify(file: UploadFile = File(...), top: int = Form(5)):
        name = display_name(file.filename)
        if not 1 <= top <= 50:
            raise UploadError(422, "top must be between 1 and 50")
        if not jobs.try_acquire():
            raise UploadError(503, "server busy: too many identification requests, retry later")
        handed_over = False
        try:
            saved = await area.save(file, name)
            cancel = threading.Event()
            fut = asyncio.get_running_loop().run_in_executor(pool, identify_job, saved, name, top, cancel)
            fut.add_done_callback(functools.partial(_job_done, saved=saved, jobs=jobs))
            handed_over = True
            try:
                return await asyncio.wait_for(asyncio.shield(fut), cfg.timeout_s)
            except asyncio.TimeoutError:
                cancel.set()
                return error(504, f"identification took longer than {cfg.timeout_s:g} s")
        finally:
            if not handed_over:
                jobs.release()

    @app.post("/enroll")
    async def enroll(singer: str = Form(...), files: list[UploadFile] = File(...), kind: str = Form("real"),
                     authorization: str | None = Header(None)):
        authorise(authorization, "enrol")
        singer = singer.strip()
        if (why := singer_problem(singer) or kind_problem(kind)) is not None:  # the rules of a table's cells
            raise UploadError(422, why)
        if len(files) > cfg.max_files:
            raise UploadError(413, f"at most {cfg.max_files} files per request")
        names = [display_name(f.filename) for f in files]
        saved: list[Path] = []
        try:
            for f, name in zip(files, names):
                saved.append(await area.save(f, name))
            return await asyncio.to_thread(enroll_job, list(zip(saved, names)), singer, kind)
        finally:
            for p in saved:
                p.unlink(missing_ok=True)

    def enroll_job(files: list[tuple[Path, str]], singer: str, kind: str) -> dict:
        import pandas as pd

        for path, name in files:  # all or nothing: every file is checked before any is kept
            try:
                load_audio(path, max_seconds=cfg.max_seconds)
            except AudioError as e:
                raise audio_error(name, e) from None
        rows = [{"path": str(area.keep(p)), "singer": singer, "song": name, "stem": "mixture", "kind": kind}
                for p, name in files]
        with model_lock:
            r = cat.enroll(pd.DataFrame(rows), workers=0, progress=False)
        shown = {row["path"]: row["song"] for row in rows}
        errors = [_rename(e, shown) for e in r["errors"]]
        return {"singer": singer, "kind": kind, "enrolled": r["enrolled"], "skipped": r["skipped"], "errors": errors}

    @app.delete("/singers/{singer:path}")
    def remove(singer: str, authorization: str | None = Header(None)):
        authorise(authorization, "remove singers")
        with model_lock:
            n = cat.remove_singer(singer)
        if not n:
            raise UploadError(404, f"singer {singer!r} is not in the catalogue")
        return {"singer": singer, "removed_tracks": n}

    @app.exception_handler(UploadError)
    async def refused(request: Request, exc: UploadError):
        return error(exc.status, exc.reason)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return error(422, _validation_reason(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    page = resources.files("singerid.service").joinpath("static", "index.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    return app


def _job_done(fut, saved: Path, jobs: Jobs) -> None:
    """The work really ended (answered or not): free its slot, remove its upload, hand freed heap back to the OS."""
    if not fut.cancelled():
        fut.exception()  # retrieved: a job abandoned after its timeout may fail unheard
    saved.unlink(missing_ok=True)
    jobs.release()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()
M_ARENA_MAX = -8  # glibc mallopt parameter


def _bound_malloc_arenas(n: int = 2) -> None:
    """glibc gives each thread that allocates its own heap arena (up to 8 per core) and keeps their freed pages:
    after a burst of concurrent decodes the process's RSS stays at the burst's peak. A few shared arenas (as
    MALLOC_ARENA_MAX=2) and a trim after each job let it settle back."""
    if _LIBC is not None and "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(M_ARENA_MAX, n)


def _protected(method: str, path: str) -> str | None:
    """What a request does when it needs the bearer token (None: open to all)."""
    if method == "POST" and path.rstrip("/") == "/enroll":
        return "enrol"
    if method == "DELETE" and path.startswith("/singers/"):
        return "remove singers"
    return None


def _body_limit(cfg: ServiceConfig, path: str) -> int:
    files = cfg.max_files if path.rstrip("/") == "/enroll" else 1
    return int(files * cfg.max_upload_mb * MB) + 64 * 1024  # + multipart headers and form fields


def _validation_reason(errors: list[dict]) -> str:
    """FastAPI's validation errors as one line, without the offending input (it may be a raw upload)."""
    parts = []
    for e in errors:
        field = next((str(x) for x in reversed(e.get("loc", ())) if isinstance(x, str)), "request")
        if field in ("file", "files") and e.get("type") != "missing":
            parts.append(f"{field}: every upload must be a file with a file name")
        else:
            parts.append(f"{field}: {e.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def _rename(message: str, shown: dict[str, str]) -> str:
    for path, name in shown.items():
        message = message.replace(path, name)
    return message


def app_from_env():
    """uvicorn factory for worker processes: the config from $SINGERID_SERVICE, this worker's share of the CPUs."""
    from .. import cpu

    cfg = ServiceConfig(**json.loads(os.environ[ENV]))
    cpu.configure(cfg.threads, processes=cfg.workers)
    return create_app(cfg)


def serve(cfg: ServiceConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    try:
        import uvicorn
    except ImportError as e:
        raise ImportError("install singerid[service] for `serve` (fastapi, uvicorn, python-multipart)") from e
    _check_catalogue(cfg.catalogue)
    os.environ[ENV] = json.dumps(asdict(cfg))
    uvicorn.run("singerid.service.app:app_from_env", factory=True, host=host, port=port, workers=cfg.workers,
                log_level="info", timeout_keep_alive=5, http="singerid.service.guard:GuardedH11Protocol")


def _check_catalogue(folder: str) -> None:
    """Fail in the parent with a clear message (not once per worker) when there is no catalogue or it is damaged."""
    from ..catalogue.store import Store

    if not (Path(folder) / "catalogue.sqlite").is_file():
        raise FileNotFoundError(f"{folder}: no singerid catalogue (create one with `singerid enroll`)")
    Store(folder, readonly=True).close()  # CatalogueError naming the file and how to rebuild it
