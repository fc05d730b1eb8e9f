"""Jobs: submit, list, get, cancel, delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from stepscope import events
from stepscope.api.deps import Services, ServicesDep, job_record, typed_manifest
from stepscope.api.errors import ApiError, error, responses
from stepscope.images import ImageError, decode_data_url, decode_image, encode_png, is_data_url
from stepscope.jobs import TERMINAL, enqueue, live_workers, queue_name, rq_queue
from stepscope.models import PRESETS, ModelInfo
from stepscope.run import existing_decode, list_decodes, x0_artifact
from stepscope.run_format import input_image_path, run_ref
from stepscope.spec import ExperimentSpec, SpecError, check_spec, parse_spec
from stepscope.store import NotFound, new_run_id

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

QUEUE_FULL_RETRY_AFTER = 30  # seconds a client waits before resubmitting to a full queue
UPLOAD = "upload:image"  # stands for the multipart file until it is stored

SUBMIT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ExperimentSpec"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "spec": {"type": "string", "description": "the ExperimentSpec as a JSON string"},
                    "image": {"type": "string", "format": "binary", "description": "first frame (I2V models)"},
                },
            }
        },
    },
}


def job_view(services: Services, record: dict, position: int | None = None) -> dict:
    """The public shape of a job record."""
    job_id = record["id"]
    view: dict[str, Any] = {
        "id": job_id,
        "kind": record.get("kind", "experiment"),
        "status": record["status"],
        "model": record["model"],
        "created": record.get("created"),
        "started": record.get("started"),
        "finished": record.get("finished"),
        "worker": record.get("worker"),
        "error": record.get("error"),
        "progress": {"done": record.get("progress_done", 0), "total": record.get("progress_total", 0)},
        "cancel_requested": services.jobs.cancel_requested(job_id) if record["status"] == "running" else False,
        "position": position,
        "spec": record.get("spec"),
        "links": {
            "self": f"/api/jobs/{job_id}",
            "events": f"/api/jobs/{job_id}/events",
            "manifest": f"/api/jobs/{job_id}/manifest",
            "artifacts": f"/api/jobs/{job_id}/artifacts/",
        },
    }
    if view["kind"] == "bench":  # one run directory per instance inside; the summary at /api/bench/{id}
        del view["links"]["manifest"]
        view["links"]["bench"] = f"/api/bench/{job_id}"
    if record.get("parent"):
        view["parent"] = record["parent"]
    if record.get("adopted"):  # a stored run the API found without a record (docs/api.md)
        view["adopted"] = record["adopted"]
    return view


def queue_positions(services: Services, records: list[dict]) -> dict[str, int]:
    """0-based position of each queued job in its model's queue."""
    positions: dict[str, int] = {}
    for model in {r["model"] for r in records if r["status"] == "queued"}:
        ids = rq_queue(services.redis, model).get_job_ids()
        positions.update({job_id: i for i, job_id in enumerate(ids)})
    return positions


def model_info_for(services: Services, name: str) -> tuple[ModelInfo, bool]:
    """(info, served): presets are always known; other names only when a worker serves them."""
    workers = [w for w in live_workers(services.redis) if w.get("model") == name]
    if workers:
        return ModelInfo.from_json(workers[0]["info"]), True
    if name in PRESETS:
        return PRESETS[name].info, False
    served = sorted({w.get("model") for w in live_workers(services.redis)} - set(PRESETS))
    names = ", ".join(list(PRESETS) + served)
    raise SpecError("model", f"unknown model {name!r}; available: {names}")


def queue_full(services: Services, model: str) -> JSONResponse | None:
    """The 429 answer (with Retry-After) when the model's queue holds `max_queued` jobs, else None."""
    if rq_queue(services.redis, model).count < services.settings.max_queued:
        return None
    return error(
        429,
        f"model: queue {queue_name(model)} is full ({services.settings.max_queued} jobs waiting); retry later",
        "model",
        headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER)},
    )


async def limited_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused with 413 as soon as it passes `limit` bytes
    (Content-Length or not: a chunked body is counted as it is read)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ApiError(413, f"request body is over the {limit} byte limit", "body")
        yield chunk


async def _read_submission(request: Request, services: Services) -> tuple[dict, bytes | None]:
    """(spec object, uploaded image bytes) from a JSON or multipart body, within size limits."""
    max_image = services.settings.max_upload_bytes
    limit = max_image + 2**20  # the image plus the spec and multipart framing
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, f"request body is over the {limit} byte limit", "body")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        parser = MultiPartParser(
            request.headers, limited_body(request, limit), max_files=2, max_fields=8, max_part_size=2**20
        )
        # File parts stay in memory (the body is bounded by `limit`): nothing is spooled to a
        # temporary file outside the data directory.
        parser.spool_max_size = limit + 1
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise ApiError(400, f"malformed multipart body: {exc.message}", "body") from None
        try:
            return await _submission_parts(form, max_image)
        finally:
            await form.close()
    if ctype not in ("application/json", ""):
        raise ApiError(415, f"send application/json or multipart/form-data, not {ctype!r}", "content-type")
    body = bytearray()
    async for chunk in limited_body(request, limit):
        body.extend(chunk)
    return _json_object(bytes(body)), None


async def _submission_parts(form: FormData, max_image: int) -> tuple[dict, bytes | None]:
    raw_spec = form.get("spec")
    if not isinstance(raw_spec, str):
        raise ApiError(422, "spec: the multipart field 'spec' must hold the spec as JSON text", "spec")
    data = _json_object(raw_spec.encode())
    image = form.get("image")
    if image is None:
        return data, None
    if not isinstance(image, UploadFile):
        raise ApiError(422, "image: upload the first frame as a file part named 'image'", "image")
    image_bytes = await image.read(max_image + 1)
    if len(image_bytes) > max_image:
        raise ApiError(413, f"image: over the {max_image} byte limit", "image")
    return data, image_bytes


def _json_object(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(422, "spec: expected a JSON object", "spec")
    return data


def _store_images(services: Services, job_id: str, spec: ExperimentSpec, upload: bytes | None) -> dict:
    """Decode every image (refusing bad ones) and store it with the run; the spec's JSON for the job record, pointing
    at the stored images (the worker checks that JSON again when it runs the job)."""
    images = dict(spec.images())
    data = spec.model_dump(mode="json")
    if not images:
        return data
    decoded = {}
    for field, value in images.items():
        if value == UPLOAD:
            decoded[field] = decode_image(upload or b"", field)
        elif is_data_url(value):
            decoded[field] = decode_data_url(value, field)
        else:
            raise ImageError(f"{field}: must be a data:image/...;base64 URL, or upload the file as 'image'")
    run = services.store.create(job_id)
    for field, image in decoded.items():
        rel = input_image_path(field)
        run.write_bytes(rel, encode_png(image))
        _set_path(data, field, run_ref(rel))
    return data


def _set_path(data: dict, dotted: str, value: str) -> None:
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    target = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


@router.post(
    "",
    status_code=201,
    openapi_extra={"requestBody": SUBMIT_BODY},
    summary="Submit an experiment",
    responses=responses(400, 413, 415, 429),
    response_model=None,  # 201 with the job, or a 429 JSONResponse carrying Retry-After
)
async def submit(request: Request, services: ServicesDep) -> dict | JSONResponse:
    """Validate a spec (JSON body, or multipart with `spec` and an `image` file) and queue it."""
    data, upload = await _read_submission(request, services)
    spec = parse_spec(data)  # parsed first: the spec names the model it is checked against
    info, served = model_info_for(services, spec.model)
    if upload is not None:
        if spec.image is not None:
            raise ApiError(422, "image: give the first frame in the spec or as the upload, not both", "image")
        spec = spec.model_copy(update={"image": UPLOAD})
    spec = check_spec(spec, info).spec
    full = queue_full(services, spec.model)
    if full is not None:
        return full
    job_id = new_run_id()
    record = services.jobs.create(job_id, spec.model, _store_images(services, job_id, spec, upload))
    position = enqueue(services.redis, job_id, spec.model, services.settings.job_timeout, services.settings.result_ttl)
    view = job_view(services, record, position)
    if not served:
        view["warning"] = f"no running worker serves {spec.model!r} yet: the job waits until one starts"
    return view


@router.get("", summary="List jobs, newest first")
def list_jobs(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    status: Annotated[str | None, Query(pattern="^(queued|running|finished|failed|cancelled)$")] = None,
    kind: Annotated[str, Query(pattern="^(experiment|decode|bench|all)$")] = "experiment",
) -> dict:
    records = services.jobs.list(limit=limit, offset=offset, status=status, kind=None if kind == "all" else kind)
    positions = queue_positions(services, records)
    return {"jobs": [job_view(services, r, positions.get(r["id"])) for r in records], "total": services.jobs.count()}


@router.get("/{job_id}", summary="One job", responses=responses(404))
def get_job(job_id: str, services: ServicesDep) -> dict:
    record = job_record(services, job_id)
    return job_view(services, record, queue_positions(services, [record]).get(job_id))


@router.post(
    "/{job_id}/cancel", status_code=202, summary="Cancel a queued or running job", responses=responses(404, 409)
)
def cancel_job(job_id: str, services: ServicesDep) -> dict:
    record = job_record(services, job_id)
    if record["status"] in TERMINAL:
        raise ApiError(409, f"job {job_id} is already {record['status']}", "job_id")
    services.jobs.request_cancel(job_id)
    if record["status"] == "queued":
        rq_queue(services.redis, record["model"]).remove(job_id)
        services.jobs.finish(job_id, "cancelled", "cancelled while queued")
    # A running job sees the request at its next step and publishes `cancelled` itself.
    return job_view(services, services.jobs.get(job_id) or record)


@router.delete(
    "/{job_id}",
    status_code=204,
    summary="Delete a job, its events and its run directory",
    responses=responses(404, 409),
)
def delete_job(job_id: str, services: ServicesDep) -> Response:
    record = job_record(services, job_id)
    if record["status"] == "running":
        raise ApiError(409, f"job {job_id} is running: cancel it first", "job_id")
    if record["status"] == "queued":
        rq_queue(services.redis, record["model"]).remove(job_id)
        services.jobs.finish(job_id, "cancelled", "deleted while queued")
    # The run directory first: a request in between must not adopt it again as a record without a job.
    services.store.delete(job_id)
    services.jobs.delete(job_id)
    events.delete(services.redis, job_id)
    return Response(status_code=204)


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trajectory: str = Field("baseline", min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # Strict: `true` or "3" is not a step (JSON numbers only).
    step: int = Field(ge=0, le=10_000, strict=True)


@router.post(
    "/{job_id}/decodes",
    status_code=202,
    summary="Full-quality VAE decode of one stored step",
    responses={200: {"description": "already decoded: {'decode': {...}}"}, **responses(404)},
)
def request_decode(job_id: str, body: DecodeRequest, services: ServicesDep):
    """Queue a decode job (kind `decode`) on the run's model queue; its event stream carries a
    `decode` event naming the frames' directory. Answers 200 with the entry if it exists."""
    record = job_record(services, job_id)
    if record.get("kind") != "experiment":
        raise ApiError(422, f"job_id: {job_id} is a {record.get('kind')} job, not an experiment", "job_id")
    try:
        run = services.store.open(job_id)
    except NotFound:
        raise ApiError(404, f"job {job_id} has no run directory yet (it has not started)", "job_id") from None
    manifest = typed_manifest(services, run, job_id)
    done = existing_decode(run, manifest, body.trajectory, body.step)
    if done is not None:
        return JSONResponse({"decode": done}, status_code=200)
    x0_artifact(manifest, body.trajectory, body.step)  # refuses steps with nothing to decode
    decode_id = new_run_id()
    request = {"parent": job_id, "trajectory": body.trajectory, "step": body.step}
    created = services.jobs.create(decode_id, record["model"], request, kind="decode", parent=job_id)
    position = enqueue(
        services.redis, decode_id, record["model"], services.settings.job_timeout, services.settings.result_ttl
    )
    return job_view(services, created, position)


@router.get(
    "/{job_id}/decodes",
    summary="Every full-quality decode of the run (during it and requested after)",
    responses=responses(404),
)
def decodes(job_id: str, services: ServicesDep) -> dict:
    job_record(services, job_id)
    try:
        run = services.store.open(job_id)
    except NotFound:
        return {"decodes": []}
    return {"decodes": list_decodes(run, typed_manifest(services, run, job_id))}
