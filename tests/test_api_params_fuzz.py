"""Fuzzing the control API's params check (``node/api/schema.py``): any
JSON object either passes whole, matching the method's definition, or is
refused with a ParamError (-32602), never another exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from node import api
from node.api.schema import Empty, Method, ParamError, conforms

from .conftest import hypothesis_settings
from .test_api_spec import Sample

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
NAMES = st.sampled_from(["contact", "ids", "count", "force", "account", "other"])


@hypothesis_settings(300)
@given(st.dictionaries(NAMES | st.text(max_size=6), JSON, max_size=6))
def test_fuzzed_params_pass_whole_or_fail_with_a_param_error(params: dict[str, object]) -> None:
    for method in (*api.METHODS, Method("x", Sample, Empty)):
        try:
            checked = method.check(params)
        except ParamError:
            continue
        assert checked == params and conforms(checked, method.params)
