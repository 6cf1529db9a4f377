"""How a web endpoint reads its parameters and answers, in one place.

GET endpoints take query parameters and change nothing; POST endpoints
take a JSON object (the guard has checked its type and size).  Answers are
JSON.  A service's refusal (``RpcFailure``) and a malformed request are a
400 with a one-line reason; anything unexpected is a 500 whose details go
to the log by type only (a message could hold what the user typed), and
the node keeps running.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

import trio
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from ..control import RpcFailure
from .auth import Session
from .guard import SESSION_SCOPE_KEY

log = logging.getLogger("smu.web")

Params = dict[str, object]
BODY_TIMEOUT = 10.0
#: what an endpoint answers: a JSON object (a control result as it is), or a response
Answer = Mapping[str, object]
Handler = Callable[[Request, Params], Awaitable[Answer | Response]]


class WebError(Exception):
    """An answer other than 200, with a reason a person can read."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_params(request: Request) -> Params:
    if request.method != "POST":
        return dict(request.query_params)
    try:
        # a body trickled in slowly must not hold a connection for good
        with trio.fail_after(BODY_TIMEOUT):
            body = await request.body()
    except ClientDisconnect as exc:  # the guard cut a body longer than it said
        raise WebError(413, "request too large") from exc
    except trio.TooSlowError as exc:
        raise WebError(408, "the request body took too long") from exc
    try:
        params = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WebError(400, "the body is not JSON") from exc
    if not isinstance(params, dict):
        raise WebError(400, "the body must be a JSON object")
    return params


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            result = await handler(request, await read_params(request))
        except WebError as exc:
            return error(exc.status, str(exc))
        except RpcFailure as exc:
            return error(400, str(exc))
        except KeyError as exc:
            return error(400, f"bad request: {exc.args[0]!r} is missing")
        except (TypeError, ValueError) as exc:
            return error(400, f"bad request: {type(exc).__name__}")
        except Exception as exc:  # a failed request must never stop the node
            log.error("web %s %s failed: %s", request.method, request.url.path, type(exc).__name__)
            log.debug("web failure", exc_info=True)
            return error(500, "internal error")
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return run


def session_of(conn: HTTPConnection) -> Session:
    """The session the guard found for this request or WebSocket."""
    session = conn.scope.get(SESSION_SCOPE_KEY)
    if not isinstance(session, Session):
        raise WebError(401, "not signed in")
    return session


def text(params: Params, name: str, *, max_chars: int = 4096, required: bool = True) -> str:
    value = params.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise WebError(400, f"{name!r} must be text")
    if len(value) > max_chars:
        raise WebError(400, f"{name!r} is too long")
    return value


def account_id(params: Params, name: str = "account") -> str:
    """An account id in lowercase hex (64 characters)."""
    value = text(params, name, max_chars=64).lower()
    try:
        ok = len(bytes.fromhex(value)) == 32
    except ValueError:
        ok = False
    if not ok:
        raise WebError(400, f"{name!r} must be an account id")
    return value


def flag(params: Params, name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise WebError(400, f"{name!r} must be true or false")
    return value
