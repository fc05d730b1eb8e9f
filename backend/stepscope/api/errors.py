"""Every error leaves the API as JSON: {"detail": "<field>: <what is wrong>", "field": ...}."""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from stepscope.images import ImageError
from stepscope.spec import SpecError
from stepscope.store import NotFound, StoreError

log = logging.getLogger("stepscope.api")


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="what is wrong, starting with the field it is about")
    field: str | None = Field(None, description="dotted path of the offending value (spec field, image, path, ...)")


_MEANING = {
    400: "malformed body or path",
    401: "missing or wrong token",
    404: "no such job or artifact",
    409: "the job is in the wrong state for this",
    413: "body or upload too large",
    415: "unsupported content type",
    422: "invalid spec, image or parameter (field named)",
    429: "the model's queue is full",
    503: "Redis unreachable",
}


def responses(*codes: int) -> dict:
    """OpenAPI declarations of error responses, all with the ErrorBody schema."""
    return {code: {"model": ErrorBody, "description": _MEANING[code]} for code in codes}


# Every /api route can answer these: a malformed request, bad parameters, the token, Redis being down.
COMMON = responses(400, 401, 422, 503)


def error(status: int, detail: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"detail": detail}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


class ApiError(Exception):
    """An error with its HTTP status, raised by route code."""

    def __init__(self, status: int, detail: str, field: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError):
        return error(exc.status, exc.detail, exc.field)

    @app.exception_handler(SpecError)
    async def _spec(request: Request, exc: SpecError):
        return error(422, str(exc), exc.field)

    @app.exception_handler(ImageError)
    async def _image(request: Request, exc: ImageError):
        field = str(exc).split(":", 1)[0]
        return error(422, str(exc), field)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound):
        return error(404, str(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError):
        return error(400, str(exc), "path")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # FastAPI's own body parsing: malformed JSON is a 400, as elsewhere
            return error(400, f"body is not valid JSON: {first.get('ctx', {}).get('error', 'malformed')}", "body")
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(loc) or "request"
        return error(422, f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError):
        # json.loads and pydantic recurse once per nesting level: a body nested ~1,000 deep ends here.
        return error(400, "body: nested too deeply to parse (JSON nesting must stay well under 1,000 levels)", "body")

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError):
        log.warning("redis unavailable: %s", exc)
        return error(
            503,
            f"Redis is unreachable or failing ({type(exc).__name__}: {exc}); retry shortly",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        # Nothing to fix and nobody to answer: one line in the log, no traceback.
        log.warning("client disconnected before its %s %s was read", request.method, request.url.path)
        return error(400, "body: the client disconnected before sending it whole", "body")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Still a bug to fix, but the client gets the documented JSON body, not text/plain.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the API's log has the details")
