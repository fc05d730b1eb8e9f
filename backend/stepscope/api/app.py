"""The FastAPI app: routes per resource, the explorer's static files, a janitor for lost jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import stepscope
from stepscope.api import errors
from stepscope.api.deps import Services, require_token
from stepscope.api.routes import artifacts, events, exports, health, jobs, models
from stepscope.config import Settings, get_settings
from stepscope.spec import ExperimentSpec
from stepscope.store import NotFound

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


def label_lost_run(services: Services, job_id: str) -> None:
    """Mark a lost job's partial run directory as failed; its artifacts stay."""
    try:
        run = services.store.open(job_id)
        manifest = run.manifest()
    except NotFound:
        return
    record = services.jobs.get(job_id) or {}
    manifest["status"] = "failed"
    manifest["error"] = record.get("error", "worker lost")
    manifest["partial"] = True
    for traj in manifest.get("trajectories", {}).values():
        if traj.get("status") == "running":
            traj["status"] = "failed"
    run.write_manifest(manifest)


async def janitor(services: Services, every: float) -> None:
    """Fail running jobs whose worker stopped heart-beating (killed, crashed, host lost)."""
    while True:
        await asyncio.sleep(every)
        try:
            for job_id in await asyncio.to_thread(services.jobs.fail_lost, services.settings.lost_after):
                log.warning("job %s failed: its worker was lost", job_id)
                await asyncio.to_thread(label_lost_run, services, job_id)
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
        task = asyncio.create_task(janitor(services, settings.janitor_every))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await services.close()

    app = FastAPI(
        title="stepscope",
        version=stepscope.__version__,
        description="Denoising trajectories of video diffusion transformers: submit experiments, "
        "follow their events, fetch x̂₀ previews, layer norms and comparisons.",
        lifespan=lifespan,
    )
    errors.install(app)
    auth = [Depends(require_token)]
    for module in (jobs, events, artifacts, exports, models, health):
        app.include_router(module.router, dependencies=auth, responses=errors.COMMON)

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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
