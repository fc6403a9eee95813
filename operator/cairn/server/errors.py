"""API errors: always JSON, always a 4xx for the caller's mistakes, with a message that says what to
change. A 500 is a bug."""

from __future__ import annotations

import json

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or {}  # more fields of the answer, for programs (e.g. a queue's depth)

    def response(self) -> web.Response:
        return json_response({"error": self.error, "message": self.message, **self.details}, status=self.status)


def json_response(doc: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(doc, separators=(",", ":"), ensure_ascii=False), status=status, content_type="application/json"
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "Unauthorized", message)


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "Superseded", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "RunEnded", message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "TooLarge", message)
