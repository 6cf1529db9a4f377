"""The control API's methods as types: each method's parameters and result
are TypedDicts, and the checks of an incoming request's parameters and the
tables of PROTOCOL.md §13 are both read off those same definitions.

A field's text for the spec rides along as ``Annotated[T, "text"]``.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import (
    Annotated,
    Generic,
    Literal,
    NotRequired,
    Protocol,
    Required,
    TypeVar,
    Union,
    cast,
)

#: a part of a result whose shape is another section's (§11.6, §17): the
#: spec says which; the control API passes it through as a JSON object
JsonObject = Mapping[str, object]

P = TypeVar("P")
R = TypeVar("R")

#: what the control socket calls: the request's params object in, a JSON
#: value out (``node/control.py``)
Handler = Callable[[dict[str, object]], Awaitable[object]]

#: an ``int`` parameter is a signed 64-bit integer (PROTOCOL.md §13): a
#: larger one would pass the check and fail in SQLite, not as -32602
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class ParamError(ValueError):
    """The params object does not match the method's definition (JSON-RPC
    -32602): the reason names the parameter, never its value."""


class Empty(typing.TypedDict):
    """No parameters."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    tp: object
    required: bool
    doc: str


@functools.cache  # read on every request: the definitions do not change
def fields(td: type) -> tuple[Field, ...]:
    """A TypedDict's fields in the order written, with their spec text."""
    hints = typing.get_type_hints(td, include_extras=True)
    required = cast(frozenset[str], getattr(td, "__required_keys__", frozenset()))
    out = []
    for name, tp in hints.items():
        doc = ""
        # The wrappers themselves say what is required: with postponed
        # annotations, __required_keys__ cannot see NotRequired.
        is_required = name in required
        while typing.get_origin(tp) in (Annotated, NotRequired, Required):
            origin = typing.get_origin(tp)
            if origin is Annotated:
                tp, *extras = typing.get_args(tp)
                doc = " ".join(str(e) for e in extras)
            else:
                is_required = origin is Required
                (tp,) = typing.get_args(tp)
        out.append(Field(name, tp, is_required, doc))
    return tuple(out)


def is_typeddict(tp: object) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def conforms(value: object, tp: object) -> bool:
    """Whether a decoded JSON value has the type ``tp``: exactly the fields
    of a TypedDict (its required ones present), lists, objects, literals,
    unions and the scalars; ``object`` parts only need to be objects."""
    origin = typing.get_origin(tp)
    if is_typeddict(tp):
        if not isinstance(value, dict):
            return False
        known = {f.name: f for f in fields(cast(type, tp))}
        return all(k in known for k in value) and all(
            conforms(value[f.name], f.tp) if f.name in value else not f.required
            for f in known.values()
        )
    if tp is JsonObject or origin is Mapping:
        return isinstance(value, dict)
    if origin is dict:
        _, item = typing.get_args(tp)
        return isinstance(value, dict) and all(
            isinstance(k, str) and conforms(v, item) for k, v in value.items()
        )
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:  # JSON true is not a number here; SQLite holds 64 bits (§13)
        return (
            isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX
        )
    if tp is type(None) or tp is None:
        return value is None
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(conforms(v, item) for v in value)
    raise TypeError(f"a value of type {tp!r} cannot be checked")


def check_params(td: type[P], params: Mapping[str, object]) -> P:
    """``params`` as ``td``, or ParamError: unknown names refused, every
    required one present, each of its declared type (PROTOCOL.md §13)."""
    known = {f.name: f for f in fields(cast(type, td))}
    for name in params:
        if name not in known:
            raise ParamError(f"unknown parameter {name[:64]!r}")
    for f in known.values():
        if f.name not in params:
            if f.required:
                raise ParamError(f"missing parameter {f.name!r}")
            continue
        if not conforms(params[f.name], f.tp):
            raise ParamError(f"parameter {f.name!r} must be {type_text(f.tp)}")
    return cast(P, dict(params))


def type_text(tp: object) -> str:
    """A type as the spec writes it: ``string``, ``int``, ``[string]``,
    ``{name: type, ...}`` (``name?``: may be absent), ``A | B``."""
    origin = typing.get_origin(tp)
    if tp is str:
        return "string"
    if tp is bool:
        return "bool"
    if tp is int:
        return "int"
    if tp is float:
        return "number"
    if tp is type(None) or tp is None:
        return "null"
    if tp is JsonObject or origin is Mapping:
        return "object"
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a) for a in typing.get_args(tp))
    if origin is list:
        return f"[{type_text(typing.get_args(tp)[0])}]"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"{{<{'key' if key is str else type_text(key)}>: {type_text(value)}}}"
    if is_typeddict(tp):
        name = spec_name(tp)
        if name is not None:
            return f"*{name}*"
        return "{" + ", ".join(field_text(f) for f in fields(cast(type, tp))) + "}"
    raise TypeError(f"no spec form for {tp!r}")


def field_text(f: Field) -> str:
    return f"{f.name}{'' if f.required else '?'}: {type_text(f.tp)}"


def spec_name(td: object) -> str | None:
    """The name a document marked with ``named`` goes by in the spec."""
    name = getattr(td, "__spec_name__", None)
    return name if isinstance(name, str) else None


def named(name: str) -> Callable[[type[P]], type[P]]:
    """Mark a TypedDict as a document of its own: the spec shows it by name
    in the method tables and lists its fields once (§13 *Documents*)."""

    def mark(td: type[P]) -> type[P]:
        setattr(td, "__spec_name__", name)  # noqa: B010 (a TypedDict takes no class keyword)
        return td

    return mark


class Described(Protocol):
    """Every method, whatever its types: what the spec and the checks read."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> type: ...
    @property
    def result(self) -> type: ...
    @property
    def note(self) -> str: ...

    def check(self, params: Mapping[str, object]) -> object: ...


@dataclass(frozen=True, slots=True)
class Method(Generic[P, R]):
    """One control method: its name, its params and result types, and what
    the spec says about it beyond their fields."""

    name: str
    params: type[P]
    result: type[R]
    #: the spec's words after the result's fields (errors, ordering, ...)
    note: str = ""

    def check(self, params: Mapping[str, object]) -> P:
        return check_params(self.params, params)

    def bind(self, fn: Callable[[P], Awaitable[R]]) -> BoundMethod[P, R]:
        return BoundMethod(self, fn)

    def ask(self, client: Caller, params: P) -> R:
        """Call this method through a control client (``ControlClient``):
        the answer is read as the result type, for the node answering is
        this user's own, which built it as one (§13)."""
        return cast(R, client.call(self.name, **cast(Mapping[str, object], params)))


class Caller(Protocol):
    def call(self, method: str, **params: object) -> object: ...


@dataclass(frozen=True, slots=True)
class BoundMethod(Generic[P, R]):
    """A method with its implementation: checks the params, then calls it."""

    method: Method[P, R]
    fn: Callable[[P], Awaitable[R]]

    async def __call__(self, params: dict[str, object]) -> object:
        return await self.fn(self.method.check(params))


__all__ = [
    "BoundMethod",
    "Caller",
    "Described",
    "Empty",
    "Handler",
    "JsonObject",
    "Method",
    "ParamError",
    "check_params",
    "conforms",
    "fields",
    "named",
    "spec_name",
    "type_text",
]
