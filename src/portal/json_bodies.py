"""Every JSON request body is JSON, decoded strictly, before any handler sees it.

A route that takes a JSON `data` body gets it only when the request says
`Content-Type: application/json` (415 otherwise): a cross-site HTML form can send
`text/plain` or form-encoded bodies without a preflight, never `application/json`, so
this alone stops forms on other sites from posting to the API (login CSRF among them).

The body is then decoded strictly against the route's body type: `"5"` is not an
integer and `"true"` is not a boolean (Litestar's own conversion is lenient), invalid
UTF-8 and nesting deeper than the decoder's recursion limit are bad input. Each is a
400 naming the field, never a 500. Routes that read their body raw (the Stripe
webhook signs its bytes) declare no `data` and are left alone."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.params import BodyKwarg

from portal.errors import ApiError

_NOT_CHECKED = object()


def is_json_media_type(content_type: str) -> bool:
    """`application/json` or a `+json` type, parameters (charset) aside."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _json_body_type(handler: HTTPRouteHandler) -> Any:
    """The type of the handler's JSON `data` body, or _NOT_CHECKED when it takes none."""
    data = handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return _NOT_CHECKED
    kwarg = data.kwarg_definition
    if isinstance(kwarg, BodyKwarg) and kwarg.media_type != RequestEncodingType.JSON:
        return _NOT_CHECKED  # multipart or form bodies: not JSON endpoints
    return data.annotation


@cache
def _decoder(body_type: Any) -> msgspec.json.Decoder[Any] | None:
    try:
        return msgspec.json.Decoder(body_type, strict=True)
    except TypeError:  # a type msgspec cannot decode: leave it to Litestar
        return None


def _field_error(error: msgspec.ValidationError) -> ApiError:
    """400 naming the field: msgspec says `... - at `$.rcc_delta``."""
    message, _, where = str(error).partition(" - at ")
    key = where.strip("`").removeprefix("$").lstrip(".") or "body"
    fields = [{"key": key, "message": message, "source": "body"}]
    return ApiError(400, "invalid_request", f"{key}: {message}", fields=fields)


def check_json_body(body: bytes, body_type: Any) -> None:
    """Raise a 400 ApiError unless `body` decodes strictly as `body_type`."""
    decoder = _decoder(body_type)
    if decoder is None:
        return
    try:
        decoder.decode(body or b"null")
    except msgspec.ValidationError as wrong:
        raise _field_error(wrong) from None
    except msgspec.DecodeError as malformed:
        raise ApiError(400, "invalid_request", f"malformed JSON: {malformed}") from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "the body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(400, "invalid_request", "the JSON is nested too deeply") from None


async def json_bodies_only(request: Request[Any, Any, Any]) -> None:
    """The app's `before_request` hook: 415 for a JSON route's body sent as anything but
    JSON, 400 for one that does not decode strictly. It runs after routing and after the
    guards (an anonymous caller learns nothing about bodies), before Litestar's own
    decoding. (Litestar runs only the innermost layer's `before_request`: a router or
    route that sets its own must call this one too.)"""
    handler = request.route_handler
    if not isinstance(handler, HTTPRouteHandler):
        return
    body_type = _json_body_type(handler)
    if body_type is _NOT_CHECKED:
        return
    content_type = request.headers.get("content-type", "")
    if not is_json_media_type(content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as Content-Type: application/json (got {content_type[:64]!r})",
        )
    check_json_body(await request.body(), body_type)  # Litestar reuses the cached body
