"""The HTTP API of ``deephash serve`` (FastAPI): search by image, by item id, in batches;
add images; health, index information, item records, thumbnails; the page at ``/``.

A search answers ``{"results": [hits, best first], "ties": ...}``; for codes ``ties`` says
how many items share the Hamming distance of the k-th result and how they were ordered
(:class:`deephash.service.searcher.Answer`), ``null`` for float embeddings. A hit lists the
item's labels by name and, for a search from an item, whether it shares a label with it
(``shares_label``: relevance as the metrics define it; ``null`` for an upload's hits and
for unlabelled items). ``/info`` says whether some item has several labels
(``multi_label``) and how many items have any (``labelled``: 0 for an unlabelled folder).

Every response is JSON except the page, its static files and thumbnails; every error is
``{"error": "<the problem and the fix>"}`` with a 4xx status (a 500 only for a fault of
the server, see :mod:`deephash.service.guard`). Handlers are plain functions: FastAPI runs
them in its thread pool, so a forward pass never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from deephash.errors import DeephashError
from deephash.service.access import AccessGuard, AccessPolicy
from deephash.service.config import ServeConfig, check_limits
from deephash.service.errors import ApiError
from deephash.service.guard import TOO_LARGE, Guard, too_large_message
from deephash.service.memory import (
    TRIM_ABOVE,
    PixelBudget,
    handing_back,
    prepare_uploads,
    release_memory,
)
from deephash.service.searcher import Searcher
from deephash.service.uploads import Upload, UploadLimits, check_request_pixels, inspect_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
THUMBNAIL_SIDE = 128

K = Annotated[int, Query(ge=1, description="results to return (1 .. /info's max_k)")]
RADIUS = Annotated[int | None, Query(ge=0, description="codes only: keep hits within this "
                                                       "Hamming distance (still at most k)")]


def create_app(searcher: Searcher, settings: ServeConfig) -> FastAPI:
    """The service's app over a loaded ``searcher``, with the limits of ``settings``."""
    app = FastAPI(title="deephash search", docs_url=None, redoc_url=None,
                  description="Image retrieval over a deephash index folder.")
    check_limits(settings)
    app.add_middleware(AccessGuard, policy=access_policy(settings))
    app.add_middleware(Guard, max_body=settings.max_upload_bytes)  # outermost: runs first
    limits = UploadLimits(settings.max_upload_bytes, settings.max_pixels,
                          settings.max_request_pixels)
    budget = PixelBudget(settings.max_pixels_in_flight)
    app.state.pixel_budget = budget
    _add_error_handlers(app, settings)

    def check_k(k: int) -> None:
        top = min(settings.max_k, searcher.state.size)
        if not 1 <= k <= top:
            raise ApiError(422, f"k must be between 1 and {top} (this server's --max-k "
                                f"{settings.max_k}, and the index's {searcher.state.size} "
                                f"items); got {k}")

    @contextlib.contextmanager
    def decoded(uploads: list[UploadFile]) -> Iterator[tuple[list[Any], list[Upload]]]:
        """The model's input pixels of each upload (one image decoded at a time, within the
        pixel budget) and the uploads (their bytes are kept when added); memory handed back
        after the block."""
        if len(uploads) > settings.max_batch:
            raise ApiError(413, f"{len(uploads)} images in one request, more than this "
                                f"server's limit of {settings.max_batch} (--max-batch); send "
                                "them in several requests")
        inspected = [inspect_upload(upload.file.read(settings.max_upload_bytes + 1),
                                    upload.filename or "image", limits) for upload in uploads]
        check_request_pixels(inspected, limits)
        with handing_back(inspected):
            yield prepare_uploads(inspected, searcher.embedder, budget), inspected

    @app.get("/health")
    def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    def info() -> JSONResponse:
        state = searcher.state
        dim = int(state.info["dim"])
        return JSONResponse({
            "kind": "codes" if searcher.codes else "embeddings",
            "bits": dim if searcher.codes else None, "dim": dim, "size": state.size,
            "index": state.info["index"], "checkpoint": shown_path(searcher.checkpoint),
            "backbone": searcher.train_config.backbone.name, "classes": list(state.items.classes),
            "multi_label": state.items.multi_label,
            "labelled": int(state.items.labels.labelled.sum()),
            "max_k": min(settings.max_k, state.size), "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels, "max_batch": settings.max_batch,
            "max_request_pixels": settings.max_request_pixels})

    @app.post("/search")
    def search(image: Annotated[UploadFile, File(description="the query image")],
               k: K = 10, radius: RADIUS = None) -> JSONResponse:
        check_k(k)
        searcher.check_radius(radius)
        with decoded([image]) as (queries, _):
            answer = searcher.answer_images(queries, k, radius)[0]
        return JSONResponse({"results": answer.hits, "ties": answer.ties})

    @app.post("/search/batch")
    def search_batch(images: Annotated[list[UploadFile], File(description="query images")],
                     k: K = 10, radius: RADIUS = None) -> JSONResponse:
        check_k(k)
        searcher.check_radius(radius)
        with decoded(images) as (queries, _):
            answers = searcher.answer_images(queries, k, radius)
        return JSONResponse({"results": [answer.hits for answer in answers],
                             "ties": [answer.ties for answer in answers]})

    @app.get("/items/{item}")
    def item(item: int) -> JSONResponse:
        return JSONResponse(searcher.item(item))

    @app.get("/items/{item}/search")
    def search_item(item: int, k: K = 10, radius: RADIUS = None) -> JSONResponse:
        check_k(k)
        query, answer = searcher.answer_item(item, k, radius)
        return JSONResponse({"query": query, "results": answer.hits, "ties": answer.ties})

    @functools.lru_cache(maxsize=4096)
    def thumbnail_png(item: int) -> bytes:  # items never change: a cache never goes stale
        # an item's file is not checked from its header as an upload is: it takes a whole
        # image's share of the budget (uploads and thumbnails decode within one bound)
        with budget.hold(settings.max_pixels):
            image = searcher.image(item)
            large = image.width * image.height > TRIM_ABOVE
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        if large:
            release_memory()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    @app.get("/items/{item}/thumbnail", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    def thumbnail(item: int) -> Response:
        searcher.item(item)  # 404 for an unknown id, before the cache
        return Response(thumbnail_png(item), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.post("/items")
    def add(images: Annotated[list[UploadFile], File(description="images to add")],
            label: Annotated[list[str] | None, Form(
                description="class name or number; repeat the field for several labels, "
                            "leave it out for none")] = None) -> JSONResponse:
        with decoded(images) as (queries, uploads):
            added = searcher.add(queries, [(upload.data, upload.extension)
                                           for upload in uploads], label)
        return JSONResponse({"added": added, "size": searcher.state.size})

    @app.get("/", response_class=Response, include_in_schema=False)
    def page() -> Response:
        if not (STATIC / "index.html").is_file():
            raise ApiError(404, "this installation has no web page (service/static/index.html); "
                                "use the API, see /openapi.json")
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app


def access_policy(settings: ServeConfig) -> AccessPolicy:
    """Who may talk to a server of ``settings`` (:mod:`deephash.service.access`)."""
    return AccessPolicy(settings.host, tuple(settings.allowed_host), settings.token,
                        settings.token_reads)


def shown_path(path: Path) -> str:
    """A server file as the API shows it: its folder's and its own name, never the whole
    path (``bits-48/best.pt``)."""
    return "/".join(Path(path).resolve().parts[-2:])


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _first_problem(exc: RequestValidationError) -> str:
    """``query parameter k: Input should be ...`` for the first of FastAPI's errors."""
    problem = exc.errors()[0] if exc.errors() else {}
    where = [str(part) for part in problem.get("loc", ())]
    kind = {"query": "query parameter", "path": "path parameter", "body": "form field"}.get(
        where[0] if where else "", "field")
    name = ".".join(where[1:]) or "request"
    message = str(problem.get("msg", "is invalid"))
    if problem.get("type") == "missing":
        return f"{kind} {name!r} is missing; send it (see /openapi.json)"
    return f"{kind} {name!r}: {message}; fix it (see /openapi.json)"


def _add_error_handlers(app: FastAPI, settings: ServeConfig) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(DeephashError)
    async def deephash_error(request: Request, exc: DeephashError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and not content_type.startswith("multipart/form-data"):
            return _error(415, f"content type {content_type or 'none'!r} is not accepted here; "
                               "send the images as multipart/form-data (field 'image' for "
                               "/search, 'images' for /search/batch and /items)")
        return _error(422, _first_problem(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if request.scope.get(TOO_LARGE):
            return _error(413, too_large_message(settings.max_upload_bytes))
        if exc.status_code == 404:
            return _error(404, f"no such path {request.url.path}; see /openapi.json")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; see "
                               "/openapi.json")
        if exc.status_code == 400:
            return _error(400, "the request body could not be parsed; send the images as "
                               "multipart/form-data")
        return _error(exc.status_code, f"{exc.detail}; see /openapi.json")
