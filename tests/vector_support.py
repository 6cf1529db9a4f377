"""What the golden-vector tests share: loading a file, and checking that a
case fails with exactly its recorded error class."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.core import errors
from protocol.core.params import NetworkParams

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def error_class(name: str) -> type[errors.ProtocolError]:
    cls = getattr(errors, name)
    assert isinstance(cls, type) and issubclass(cls, errors.InvalidInput), name
    return cls


def raises_exactly(name: str, fn: Any, *args: Any) -> None:
    with pytest.raises(errors.ProtocolError) as info:
        fn(*args)
    assert type(info.value) is error_class(name), f"{type(info.value).__name__}: {info.value}"


def params_of(data: dict[str, Any]) -> NetworkParams:
    p = data["params"]
    params = NetworkParams(
        network_id=p["network_id"],
        genesis_pow_bits=p["genesis_pow_bits"],
        event_pow_bits=p["event_pow_bits"],
        special_pow_bits=p["special_pow_bits"],
        max_event_bytes=p["max_event_bytes"],
        max_parents=p["max_parents"],
        max_name_bytes=p["max_name_bytes"],
        max_device_events=p["max_device_events"],
        max_active_devices=p["max_active_devices"],
        min_timestamp_ms=p["min_timestamp_ms"],
        max_timestamp_ms=p["max_timestamp_ms"],
        suite=p["suite"],
    )
    return params
