"""The web app `mnistcli serve` runs: a JSON API and a drawing page over the same core as `predict`
(FastAPI; the serve extra).

    GET  /             the drawing page (one self-contained file, works offline)
    GET  /api/health   status, model, where it came from, classes, the upload limit
    POST /api/predict  one image (multipart field `image`, or a raw body with an image type)
                       -> the object `predict --json` gives for one file; repeated `image`
                       fields -> a list of them. `?input=true` adds the 28x28 input as a PNG;
                       `?top_k=3` lists the 3 most likely classes (default: all of them);
                       `?explain=true` adds what `mnistcli explain` shows: each stage's most
                       active outputs and the attribution maps of the answer and runner-up, as PNGs.

Bad input gets a 4xx with {"error": "..."} (a bad query parameter or an unknown path too);
uploads stay in memory and are never written to disk. The model is loaded once and one
inference runs at a time (a lock); torch's own threads are bounded by `--threads`. The OpenAPI
description (/openapi.json, /api/docs) declares the bodies and parameters POST /api/predict reads.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from mnistcli import inference
from mnistcli.checkpoint import LoadedModel
from mnistcli.errors import ImageError, ImageTooLarge
from mnistcli.predictions import Prediction

MAX_IMAGES = 64  # images in one request
IMAGE_TYPES = ("image/",)


_TEXT = {"type": "string"}
_INTEGER = {"type": "integer"}


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    """An array of `item`; a dict of properties means objects with those and an image, all required."""
    if "type" in item:
        return {"type": "array", "items": item}
    properties = {**item, "image": _TEXT}
    return {"type": "array", "items": {"type": "object", "properties": properties, "required": list(properties)}}


_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_RANKED = {
    "type": "object",
    "properties": {"digit": {"type": "integer"}, "label": {"type": "string"}, "probability": {"type": "number"}},
    "required": ["digit", "label", "probability"],
}
_ROW = {
    "type": "object",
    "properties": {
        "file": {"type": "string"},
        "digit": {"type": "integer"},
        "label": {"type": "string"},
        "confidence": {"type": "number"},
        "unsure": {"type": "boolean"},
        "runner_up": {"anyOf": [_RANKED, {"type": "null"}]},
        "top_k": {"type": "array", "items": _RANKED, "minItems": 1},
        "input": {"type": "string", "description": "the 28x28 input as a PNG data URL (with input=true)"},
        "explain": {
            "type": "object",
            "description": "with explain=true: each stage's outputs and the attribution maps, as PNG data URLs",
            "properties": {
                "method": {"type": "string"},
                "stages": _list_of(
                    {"name": _TEXT, "kind": _TEXT, "shape": _list_of(_INTEGER), "channels": _list_of(_INTEGER)},
                ),
                "attribution": _list_of({"digit": _INTEGER, "label": _TEXT, "ink_share": {"type": "number"}}),
            },
            "required": ["method", "stages", "attribution"],
        },
    },
    "required": ["file", "digit", "label", "confidence", "unsure", "runner_up", "top_k"],
}
_FAILED_ROW = {
    "type": "object",
    "properties": {"file": {"type": "string"}, "error": {"type": "string"}, "status": {"type": "integer"}},
    "required": ["file", "error", "status"],
}
_PICTURE = {"type": "string", "format": "binary"}
# What POST /api/predict reads, for the OpenAPI description: the endpoint reads the body itself
# (read_images), so FastAPI cannot infer it from the signature.
PREDICT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {
                            "type": "array",
                            "items": _PICTURE,
                            "minItems": 1,
                            "maxItems": MAX_IMAGES,
                            "description": "one picture, or the field repeated for several (a list comes back)",
                        }
                    },
                    "required": ["image"],
                },
                "encoding": {"image": {"contentType": "image/png, image/jpeg, image/*, application/octet-stream"}},
            },
            **{kind: {"schema": _PICTURE} for kind in ("image/png", "image/jpeg", "application/octet-stream")},
        },
    },
}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the prediction for one picture; a list (a row or a failure each) for several",
        "content": {
            "application/json": {
                "schema": {"anyOf": [_ROW, {"type": "array", "items": {"anyOf": [_ROW, _FAILED_ROW]}}]}
            }
        },
    },
    **{
        status: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        for status, text in (
            (400, "an empty request, a malformed multipart body, no field 'image', an empty file"),
            (413, "a body over --max-upload, a picture over the pixel limit, too many pictures"),
            (415, "a content type that is neither multipart/form-data nor an image"),
            (422, "a file that is not a picture or holds no digit; a bad query parameter"),
        )
    },
}


class HttpError(Exception):
    """An expected failure of a request: its status and one line for {"error": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(loaded: LoadedModel, max_upload: int) -> Any:
    """The web app around one loaded model; `max_upload` is the largest request body in bytes."""
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="mnistcli", summary="Read handwritten digits", docs_url="/api/docs", redoc_url=None)
    predictor = Predictor(loaded)
    page = resources.files("mnistcli").joinpath("static/index.html").read_text(encoding="utf-8")

    _answer_errors_as_json(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        ck = loaded.checkpoint
        return {
            "status": "ok",
            "model": ck.model,
            "source": loaded.source,
            "checkpoint": loaded.path.name,
            "summary": ck.describe(),
            "classes": ck.classes,
            "max_upload_bytes": max_upload,
        }

    @app.post("/api/predict", openapi_extra=PREDICT_OPENAPI, responses=PREDICT_RESPONSES)
    async def predict(
        request: Request,
        input: bool = Query(False, description="add the 28x28 input the network saw, as a PNG data URL"),
        # None (left out): all classes; declared int so that the description says "an integer, at least 1"
        top_k: int = Query(None, ge=1, description="how many most likely classes to list (default: all)"),
        explain: bool = Query(False, description="add each stage's outputs and the attribution maps, as PNGs"),
    ) -> Any:
        """One image as multipart field `image` (repeat the field for several) or as a raw body with an
        image content type. `input=true` adds the 28x28 input the network saw, as a PNG data URL;
        `top_k` lists that many most likely classes (default: all of them); `explain=true` adds what
        the network did with it (as `mnistcli explain`)."""
        images = read_images(request.headers.get("content-type", ""), await request.body())
        extras = Extras(input, top_k, explain)
        if len(images) == 1:
            return await run_in_threadpool(predictor.predict, *images[0], extras)
        return await run_in_threadpool(predictor.predict_each, images, extras)

    return BodyLimit(app, max_upload)


def _answer_errors_as_json(app: Any) -> None:
    """Every failure of a request, expected or not, answers {"error": "..."} with its status."""

    @app.exception_handler(HttpError)
    async def expected(request: Request, exc: HttpError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 404, 405
        message = f"{str(exc.detail).lower()}: {request.method} {request.url.path}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:  # logged with its traceback by uvicorn
        return JSONResponse({"error": "internal server error (a bug: the server log has the traceback)"}, 500)


@dataclass(frozen=True)
class Extras:
    """What a request asks for besides the answer (its query parameters)."""

    input: bool = False
    top_k: Optional[int] = None
    explain: bool = False


class Predictor:
    """The model, loaded once, behind a lock: one forward pass at a time whatever the request threads."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.lock = threading.Lock()
        self.object_size = loaded.checkpoint.spec.object_size
        self.classes = len(loaded.checkpoint.classes)

    def predict(self, name: str, data: bytes, extras: Optional[Extras] = None) -> dict[str, Any]:
        """The row `predict --json --top-k K` gives for one file (K: all classes unless given); HttpError
        for a picture that cannot be read."""
        return self._rows([name], [self._read(name, data)], extras or Extras())[0]

    def predict_each(self, images: list[tuple[str, bytes]], extras: Optional[Extras] = None) -> list[dict[str, Any]]:
        """Several pictures, in one forward pass: a row each, or {"file", "error", "status"} for one
        that cannot be read."""
        rows: list[Optional[dict[str, Any]]] = []
        places, names, inputs = [], [], []
        for name, data in images:
            try:
                inputs.append(self._read(name, data))
            except HttpError as exc:
                rows.append({"file": name, "error": str(exc), "status": exc.status})
                continue
            places.append(len(rows))
            names.append(name)
            rows.append(None)
        for place, row in zip(places, self._rows(names, inputs, extras or Extras())):
            rows[place] = row
        return [row for row in rows if row is not None]

    def _read(self, name: str, data: bytes) -> np.ndarray:
        try:
            return inference.network_input(data, name, object_size=self.object_size)
        except ImageTooLarge as exc:
            raise HttpError(413, str(exc)) from exc
        except ImageError as exc:
            raise HttpError(422, str(exc)) from exc

    def _rows(self, names: list[str], inputs: list[np.ndarray], extras: Extras) -> list[dict[str, Any]]:
        k = self.classes if extras.top_k is None else min(extras.top_k, self.classes)  # as `predict --top-k` does
        with self.lock:
            predictions = inference.predict_inputs(self.loaded, inputs, names, top_k=k)
            explained = [self._explain(p) for p in predictions] if extras.explain else []
        rows = [p.to_dict() for p in predictions]
        for row, p in zip(rows, predictions):
            if extras.input:
                row["input"] = png_data_url(p.input)
        for row, doc in zip(rows, explained):
            row["explain"] = doc
        return rows

    def _explain(self, p: Prediction) -> dict[str, Any]:
        from mnistcli import explain

        return explanation_json(explain.explain(self.loaded, p), self.loaded.checkpoint.classes)


def explanation_json(explanation: Any, classes: list[str]) -> dict[str, Any]:
    """What the page shows of an explanation: each stage's most active outputs side by side (one
    grey PNG a stage, each map scaled to its own range), and each attribution map as a PNG (red
    for the class, blue against)."""
    from mnistcli.explain import strongest_channels

    stages = []
    for stage in explanation.stages:
        shown = strongest_channels(stage.values) if stage.is_image else []
        maps = stage.values[shown] if stage.is_image else stage.values.reshape(1, 1, -1)
        stages.append(
            {
                "name": stage.name,
                "kind": stage.kind,
                "shape": list(stage.shape),
                "channels": shown,
                "image": maps_png(maps),
            }
        )
    attribution = [
        {"digit": d, "label": classes[d], "ink_share": explanation.ink_share(d), "image": attribution_png(a)}
        for d, a in explanation.attribution.items()
    ]
    return {"method": explanation.method, "stages": stages, "attribution": attribution}


def maps_png(maps: np.ndarray) -> str:
    """Maps (C, H, W) side by side, 1 px apart, each stretched over 0-255 from its own least to most."""
    c, h, w = maps.shape
    strip = np.full((h, c * (w + 1) - 1), 255, np.uint8)
    for i, m in enumerate(maps):
        low, high = float(m.min()), float(m.max())
        scaled = (m - low) / (high - low) if high > low else np.zeros_like(m)
        strip[:, i * (w + 1) : i * (w + 1) + w] = np.round(255 * scaled).astype(np.uint8)
    return png_data_url(strip)


def attribution_png(a: np.ndarray) -> str:
    """An attribution map as RGB: white where it is 0, red where pixels argue for the class, blue against."""
    top = float(np.abs(a).max()) or 1.0
    pos, neg = np.clip(a / top, 0, 1), np.clip(-a / top, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
    return png_data_url(np.round(255 * np.clip(rgb, 0, 1)).astype(np.uint8))


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's complaint about a query parameter as one line: "top_k: input should be ... (got '0')"."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "request"
        msg = str(error.get("msg", "invalid"))
        value = error.get("input")
        got = f" (got {_shorten(repr(value))})" if isinstance(value, (str, int, float)) else ""
        parts.append(f"{where}: {msg[:1].lower()}{msg[1:]}{got}")
    return "; ".join(parts) or "invalid request"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def png_data_url(image: Any) -> str:
    """A uint8 array (H x W grey, or H x W x 3) as a data: URL of a PNG, for an <img> on the page."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def read_images(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in a request: multipart `image` fields, or the whole body."""
    if not body:
        raise HttpError(400, "empty request: send an image as multipart field 'image' or as the body")
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return _multipart_images(content_type, body)
    if kind.startswith(IMAGE_TYPES) or kind == "application/octet-stream":
        return [("upload", body)]
    raise HttpError(415, f"unsupported content type {kind or '(none)'!r}: send multipart/form-data or an image type")


def _multipart_images(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise HttpError(400, "malformed multipart body")
    images = []
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") != "image":
            continue
        data = part.get_payload(decode=True)
        images.append((part.get_filename() or "upload", data if isinstance(data, bytes) else b""))
    if not images:
        raise HttpError(400, "no multipart field named 'image'")
    if len(images) > MAX_IMAGES:
        raise HttpError(413, f"too many images in one request ({len(images)}; at most {MAX_IMAGES})")
    empty = [name for name, data in images if not data]
    if empty and len(images) == 1:
        raise HttpError(400, f"{empty[0]}: empty file")
    return images


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets 413 before the app sees any of it.

    The rest of an over-large body (up to DRAIN_FACTOR times the limit) is read and dropped before
    the 413 goes out: a client still sending it, whose connection the server then closes, would
    otherwise see the connection reset instead of the answer. A client that asked to be told first
    (Expect: 100-continue, as curl does for large bodies) gets the 413 without sending the body."""

    DRAIN_FACTOR = 4

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            drain = not waiting and int(declared) <= self.limit * self.DRAIN_FACTOR
            return await self._too_large(receive, send, received=0, more=drain)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._too_large(receive, send, len(body), message.get("more_body", False))
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(
        self, receive: Callable[..., Any], send: Callable[..., Any], received: int, more: bool
    ) -> None:
        while more and received <= self.limit * self.DRAIN_FACTOR:  # read and drop the rest
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        mb = self.limit / 1e6
        await JSONResponse({"error": f"request body over the {mb:g} MB limit (--max-upload)"}, status_code=413)(
            {"type": "http"}, _nothing, send
        )


async def _nothing() -> dict[str, Any]:
    return {"type": "http.disconnect"}
