"""The FastAPI app: routes per resource, the explorer's static files, a janitor for lost jobs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import posixpath
import signal
import threading
from importlib import resources
from pathlib import Path

import fastapi_offline
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

import stepscope
from stepscope.api import errors
from stepscope.api.deps import Services, adopt_stored_runs, require_token
from stepscope.api.routes import artifacts, bench, events, exports, health, jobs, models, schema, tasks
from stepscope.api.routes.events import EventHub
from stepscope.bench import BenchRequest
from stepscope.config import Settings, get_settings
from stepscope.run_format import failed_manifest
from stepscope.spec import ExperimentSpec
from stepscope.store import MANIFEST, NotFound, RunDir

log = logging.getLogger("stepscope.api")


def frontend_dir() -> Path | None:
    """The explorer's files: packaged as stepscope.web, or the repo's frontend/ in a checkout."""
    try:
        # stepscope.web is a data-only namespace package: ask for the file, not the folder,
        # because str() of a namespace package's MultiplexedPath is not a path.
        index = resources.files("stepscope.web").joinpath("index.html")
        if index.is_file():
            return Path(str(index)).parent
    except ModuleNotFoundError:
        pass
    checkout = Path(stepscope.__file__).resolve().parents[2] / "frontend"
    return checkout if (checkout / "index.html").is_file() else None


# Swagger UI and ReDoc from the fastapi-offline wheel: the API docs page needs no CDN.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
# ReDoc's bundle shows a logo from its CDN in its "API docs by Redocly" line; served with the wheel's own icon instead.
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@functools.lru_cache(maxsize=1)
def offline_redoc_bundle() -> bytes:
    """The ReDoc bundle of the fastapi-offline wheel, with its one request off the machine (the logo) pointed here."""
    text = (DOCS_ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    if REDOC_CDN_LOGO not in text:
        log.warning("the ReDoc bundle no longer names %s: /redoc may load something from a CDN", REDOC_CDN_LOGO)
    return text.replace(REDOC_CDN_LOGO, "/static-docs/favicon.png").encode()


SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def close_streams_on_signal(hub: EventHub, loop: asyncio.AbstractEventLoop) -> dict:
    """Make SIGTERM/SIGINT also end open SSE streams (with a last event), then run the server's own
    handler: uvicorn waits for open responses before it stops, and a stream never ends by itself.
    Returns the handlers it replaced (to restore); nothing is done off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS}

    def handler(signum, frame):
        loop.call_soon_threadsafe(hub.close)
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL:  # nobody else handles it: die as the signal says
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in SHUTDOWN_SIGNALS:
        signal.signal(sig, handler)
    return previous


# Seconds the janitor waits for a lost job's writer to finish a write in progress before it tries again next round.
WRITE_LOCK_WAIT = 5.0


def fail_lost_job(services: Services, job_id: str) -> bool:
    """Fail one job whose worker went silent, fenced: holding the job's write lock exclusively (no write of its worker
    is half done), revoke the worker's lease with the `failed` move (jobs.Jobs.fail_lost_job) and label its run; a
    worker that wakes up afterwards finds its lease gone at its next write and stops. False if it was not failed (it
    heart-beat again, or its writer is stopped in the middle of a write: then next round)."""
    with services.store.exclusive(job_id, WRITE_LOCK_WAIT) as held:
        if not held:
            log.warning("job %s: its silent worker is in the middle of a write; trying again next round", job_id)
            return False
        if not services.jobs.fail_lost_job(job_id, services.settings.lost_after):
            return False
        label_lost_run(services, job_id)
    return True


def label_lost_run(services: Services, job_id: str) -> None:
    """Mark a lost job's partial run directory as failed; its artifacts stay. A bench job's instance runs that
    were still running are marked the same way."""
    record = services.jobs.get(job_id) or {}
    error = record.get("error", "worker lost")
    try:
        if record.get("kind") == "bench":
            root = services.store.open(job_id, require_manifest=False)
            for rel in root.glob(f"*/*/{MANIFEST}"):
                # Finished instances stay finished: only the one the worker was running is partial.
                mark_failed(root.subdir(posixpath.dirname(rel)), error, only_running=True)
        elif record.get("kind", "experiment") == "experiment":
            mark_failed(services.store.open(job_id), error)
    except NotFound:
        return


def mark_failed(run: RunDir, error: str, only_running: bool = False) -> None:
    """A lost worker's run: failed and partial, with every running trajectory failed (with `only_running`, only if
    the run itself is still marked running). A manifest that is not a run's (not an object) is left as it is."""
    try:
        manifest = run.manifest()
    except (ValueError, RecursionError):  # not JSON, or over the size limit: nothing of ours to label
        log.warning("run %s: its manifest cannot be read; not labelled failed", run.path)
        return
    labelled = failed_manifest(manifest, error, only_running)
    if labelled is not None:
        run.write_manifest(labelled)


# Seconds between looks for run directories written into the store without the service (after the one at start).
ADOPT_EVERY = 60.0


async def adopt_stored(services: Services, every: float = ADOPT_EVERY) -> None:
    """List the store's runs that have no job record (a `stepscope reproduce` output served by `up --data-dir`) at
    start, then every `every` seconds, so that the jobs list shows them without each being opened first."""
    while True:
        try:
            adopted = await asyncio.to_thread(adopt_stored_runs, services)
            if adopted:
                log.info("listed %d stored run(s) that had no job record", adopted)
        except Exception as exc:  # Redis or the store unreachable: next round
            log.warning("could not list the stored runs: %s", exc)
        await asyncio.sleep(every)


async def janitor(services: Services, every: float) -> None:
    """Fail running jobs whose worker stopped heart-beating (killed, crashed, host lost)."""
    while True:
        await asyncio.sleep(every)
        try:
            for job_id in await asyncio.to_thread(services.jobs.lost, services.settings.lost_after):
                if await asyncio.to_thread(fail_lost_job, services, job_id):
                    log.warning("job %s failed: its worker was lost", job_id)
        except Exception as exc:  # Redis down: try again next round
            log.debug("janitor skipped a round: %s", exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.redis_url:
        raise RuntimeError("STEPSCOPE_REDIS_URL is not set (`stepscope up` starts Redis for you)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        services = Services(settings)
        app.state.services = services
        hub = app.state.event_hub = EventHub(settings.redis_url)
        replaced = close_streams_on_signal(hub, asyncio.get_running_loop())
        tasks = [
            asyncio.create_task(janitor(services, settings.janitor_every)),
            asyncio.create_task(adopt_stored(services)),
        ]
        try:
            yield
        finally:
            for sig, handler in replaced.items():
                if signal.getsignal(sig) is not handler:  # ours is still installed: put back what was there
                    signal.signal(sig, handler)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await hub.aclose()
            await services.close()

    app = FastAPI(
        title="stepscope",
        version=stepscope.__version__,
        description="Denoising trajectories of video diffusion transformers: submit experiments, "
        "follow their events, fetch x̂₀ previews, layer norms and comparisons.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    auth = [Depends(require_token)]
    for module in (jobs, bench, events, artifacts, exports, models, health, schema, tasks):
        app.include_router(module.router, dependencies=auth, responses=errors.COMMON)

    @app.get("/docs-assets/redoc.standalone.js", include_in_schema=False)
    def redoc_bundle() -> Response:
        return Response(offline_redoc_bundle(), media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    app.mount("/static-docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/static-docs/swagger-ui-bundle.js",
            swagger_css_url="/static-docs/swagger-ui.css",
            swagger_favicon_url="/static-docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/static-docs/favicon.png",
            with_google_fonts=False,
        )

    web = frontend_dir()
    if web is not None:
        # The explorer's shell holds no data, so it loads without the token and then asks for it.
        @app.get("/", include_in_schema=False)
        def index() -> FileResponse:
            return FileResponse(web / "index.html", headers={"Cache-Control": "no-cache"})

        app.mount("/static", StaticFiles(directory=web), name="static")

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            spec_schema = ExperimentSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(spec_schema.pop("$defs", {}))
            components["ExperimentSpec"] = spec_schema
            bench_schema = BenchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(bench_schema.pop("$defs", {}))
            components["BenchRequest"] = bench_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
