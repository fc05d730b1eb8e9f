"""Bench jobs: the task benchmark (`stepscope bench`) submitted over HTTP, run by the model's resident worker."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stepscope.api.deps import ServicesDep, job_record
from stepscope.api.errors import ApiError, responses
from stepscope.api.routes.jobs import job_view, limited_body, model_info_for, queue_full, queue_positions
from stepscope.bench import check_request, parse_bench_request
from stepscope.jobs import bench_timeout, enqueue
from stepscope.run_format import BENCH_RESULT, BENCH_SUMMARY, BENCH_TABLE
from stepscope.store import MAX_MANIFEST_BYTES, NotFound, new_run_id

router = APIRouter(prefix="/api/bench", tags=["bench"])

MAX_BODY = 2**20  # a request is its options and up to 16 variants: far below this
SUBMIT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BenchRequest"}}},
}


async def read_json_body(request: Request) -> object:
    """The JSON body, refused with 413 past MAX_BODY bytes, 415 for other content types and 400 if malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise ApiError(415, f"send application/json, not {ctype!r}", "content-type")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise ApiError(413, f"request body is over the {MAX_BODY} byte limit", "body")
    body = bytearray()
    async for chunk in limited_body(request, MAX_BODY):
        body.extend(chunk)
    try:
        return json.loads(bytes(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", "body") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's parser takes NaN/Infinity; no JSON response can hold them


def _summary(run, job_id: str) -> tuple[object, str | None]:
    """bench-summary.json (bounded by the request, not by the instances) and bench.md, or a 409 naming the file that
    is not what the worker writes."""
    try:
        result = json.loads(run.read_bytes(BENCH_SUMMARY, limit=MAX_MANIFEST_BYTES), parse_constant=_no_constant)
        table = run.read_bytes(BENCH_TABLE, limit=MAX_MANIFEST_BYTES).decode() if run.exists(BENCH_TABLE) else None
    except NotFound:
        return None, None  # replaced between the check and the read: as before the first instance
    except (ValueError, RecursionError) as exc:  # not JSON / UTF-8, or over the limit
        raise ApiError(409, f"job {job_id}: its bench summary cannot be read ({exc})", "job_id") from None
    return result, table


@router.post(
    "",
    status_code=201,
    openapi_extra={"requestBody": SUBMIT_BODY},
    summary="Submit a task benchmark",
    responses=responses(400, 413, 415, 429),
    response_model=None,  # 201 with the job, or a 429 JSONResponse carrying Retry-After
)
async def submit_bench(request: Request, services: ServicesDep) -> dict | JSONResponse:
    """Validate a BenchRequest (every variant as a spec variant, against the model) and queue it as a job of kind
    `bench` on its model's queue; follow it at /api/jobs/{id}/events, read its result at /api/bench/{id}."""
    bench = parse_bench_request(await read_json_body(request))
    info, served = model_info_for(services, bench.model)
    check_request(bench, info)
    full = queue_full(services, bench.model)
    if full is not None:
        return full
    job_id = new_run_id()
    record = services.jobs.create(job_id, bench.model, bench.to_json(), kind="bench")
    timeout = bench_timeout(services.settings.job_timeout, bench.instance_count)
    position = enqueue(services.redis, job_id, bench.model, timeout, services.settings.result_ttl)
    view = job_view(services, record, position)
    if not served:
        view["warning"] = f"no running worker serves {bench.model!r} yet: the job waits until one starts"
    return view


@router.get(
    "/{job_id}",
    summary="A bench job and its result",
    responses=responses(404),
)
def bench_result(job_id: str, services: ServicesDep) -> Response:
    """The job; `result`, the bench's summary (bench-summary.json: per family × trajectory the instances counted,
    success rates with 95% Wilson score intervals, mean scores and mean curves; no per-instance list), and `table`
    (bench.md), replaced after every instance (`result.complete` false until the end) and null before the first;
    `links.bench_json`, the full bench.json with every instance (served as a file, never parsed here: it grows to
    about 1 GB at 2,000 runs), once written — at the end, or when a bench is cancelled or fails. A bench whose
    worker was lost keeps the summary of the instances it finished."""
    record = job_record(services, job_id)
    if record.get("kind") != "bench":
        raise ApiError(404, f"job_id: {job_id} is a {record.get('kind')} job, not a bench", "job_id")
    result = table = full = None
    try:
        run = services.store.open(job_id, require_manifest=False)
        if run.exists(BENCH_SUMMARY):
            result, table = _summary(run, job_id)
        if run.exists(BENCH_RESULT):
            full = f"/api/jobs/{job_id}/artifacts/{BENCH_RESULT}"
    except NotFound:
        pass  # not started: no directory yet
    view = job_view(services, record, queue_positions(services, [record]).get(job_id))
    # The result changes after every instance while the job runs: never cache.
    body = {"job": view, "result": result, "table": table, "links": {"bench_json": full}}
    return JSONResponse(body, headers={"Cache-Control": "no-cache"})
