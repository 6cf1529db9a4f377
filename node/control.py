"""The local control API (PROTOCOL.md §13): newline-delimited JSON-RPC 2.0
over a unix socket inside the 0700 data directory (S8).

One request per line, one response per line.  ``ControlClient`` is what the
CLI, the demo and the tests use.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import trio

from .api.schema import Handler, ParamError
from .errors import DaemonNotRunning, DiskFullError, NodeUsageError, RpcError, StoreCorruptError
from .tasks import TaskStatus

MAX_LINE = 1 << 20
log = logging.getLogger("smu.control")

# JSON-RPC error codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
INVALID_INPUT = 1  # the submitted data is invalid (protocol.errors.InvalidInput)
USAGE = 2  # local misuse: unknown account, not active, ...
DISK_FULL = 3  # the disk or the node's disk budget is full: nothing was written

__all__ = ["ControlClient", "Handler", "RpcFailure", "serve"]


class RpcFailure(Exception):
    """Raised by a handler to answer with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: object | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


async def _handle_conn(stream: trio.SocketStream, methods: dict[str, Handler]) -> None:
    buf = b""
    async with stream:
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not chunk:
                return
            buf += chunk
            if len(buf) > MAX_LINE and b"\n" not in buf:
                await _send(stream, None, error=(INVALID_REQUEST, "request line too long"))
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not await _answer(stream, line, methods):
                    return


async def _send(
    stream: trio.SocketStream,
    req_id: object,
    result: object = None,
    error: tuple[int, str] | None = None,
    data: object | None = None,
) -> bool:
    msg: dict[str, object] = {"jsonrpc": "2.0", "id": req_id}
    if error is not None:
        err: dict[str, object] = {"code": error[0], "message": error[1]}
        if data is not None:
            err["data"] = data
        msg["error"] = err
    else:
        msg["result"] = result
    try:
        await stream.send_all(json.dumps(msg).encode() + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def _answer(stream: trio.SocketStream, line: bytes, methods: dict[str, Handler]) -> bool:
    try:
        req = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return await _send(stream, None, error=(PARSE_ERROR, "not JSON"))
    if not isinstance(req, dict) or not isinstance(req.get("method"), str):
        return await _send(stream, None, error=(INVALID_REQUEST, "not a JSON-RPC request"))
    req_id = req.get("id")
    params = req.get("params", {})
    if not isinstance(params, dict):
        return await _send(stream, req_id, error=(INVALID_PARAMS, "params must be an object"))
    handler = methods.get(req["method"])
    if handler is None:
        return await _send(stream, req_id, error=(METHOD_NOT_FOUND, f"no method {req['method']!r}"))
    try:
        result = await handler(params)
    except ParamError as exc:  # checked against node/api before anything ran (§13)
        return await _send(stream, req_id, error=(INVALID_PARAMS, str(exc)))
    except RpcFailure as exc:
        return await _send(stream, req_id, error=(exc.code, str(exc)), data=exc.data)
    except DiskFullError as exc:  # rolled back whole: say so (§13.3)
        return await _send(stream, req_id, error=(DISK_FULL, str(exc)))
    except StoreCorruptError as exc:  # a sealed value did not open (§15.21): say which
        log.error("control method %s: %s", req["method"], exc)
        return await _send(stream, req_id, error=(INTERNAL_ERROR, str(exc)))
    except (KeyError, TypeError, ValueError) as exc:
        return await _send(stream, req_id, error=(INVALID_PARAMS, f"bad params: {exc}"))
    except Exception as exc:  # one failed call must never stop the daemon
        log.exception("control method %s failed", req["method"])
        return await _send(
            stream, req_id, error=(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        )
    return await _send(stream, req_id, result=result)


async def serve(
    path: Path,
    methods: dict[str, Handler],
    task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control API on a unix socket only the owner can reach.
    The daemon holds the data directory's lock, so a socket found here is a
    stale one; the one removed at the end is only ever this daemon's own."""
    if path.exists() or path.is_symlink():
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    own = os.stat(path).st_ino
    sock.listen(16)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:
        await trio.serve_listeners(
            lambda s: _handle_conn(s, methods),
            [listener],
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == own:
                path.unlink()


class ControlClient:
    """A blocking client (the CLI is synchronous); ``Method.ask`` calls
    through it with typed params and result."""

    def __init__(self, path: Path, timeout: float | None = 600.0) -> None:
        self.path = path
        self.timeout = timeout
        self._next_id = 0

    def call(self, method: str, **params: object) -> Any:
        if not self.path.exists():
            raise DaemonNotRunning(
                f"no node is running for {self.path.parent}: start one with "
                f"`smu node run --data-dir {self.path.parent}`"
            )
        self._next_id += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise DaemonNotRunning(
                f"the node for {self.path.parent} is not running (stale socket): start it with "
                f"`smu node run --data-dir {self.path.parent}`"
            ) from exc
        with s:
            req = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
            try:
                s.sendall(json.dumps(req).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise NodeUsageError(
                    f"the node refused the request (over {MAX_LINE} bytes?)"
                ) from exc
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise NodeUsageError("the node closed the control connection")
                buf += chunk
                if len(buf) > 64 * MAX_LINE:
                    raise NodeUsageError("control response too long")
        resp = json.loads(buf.split(b"\n", 1)[0])
        if "error" in resp:
            err = resp["error"]
            raise RpcError(int(err.get("code", 0)), str(err.get("message", "error")))
        return resp.get("result")
