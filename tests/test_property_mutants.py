"""Mutation checks of the properties in ``test_properties.py``: each one
runs a property against a deliberately broken copy of a rule (the source of
a method of ``protocol.log.rules.Verdicts``, of ``protocol.log.context.merge``,
of ``AccountLog.check`` or of ``state.evaluate``, edited in memory and swapped
in with ``mock.patch``) and requires it to fail: none of them holds
vacuously."""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import protocol.core.canonical
import protocol.core.crypto
import protocol.log.account
import protocol.log.context
import protocol.log.rules
import protocol.log.state
from protocol.log.account import AccountLog

from .test_properties import (
    OrderCase,
    attack_cases,
    bad_cases,
    check_bad_input_harmless,
    check_concurrent_union,
    check_convergence,
    check_recover_ends_attack,
    check_revocation_dominates,
    concurrent_cases,
    order_cases,
)

# --------------------------------------------------------------------------
# Mutation checks: each property catches a deliberately broken rule.
#
# ``mutant`` recompiles a function from its source with one snippet
# replaced; the original code is untouched and restored on exit.


@contextmanager
def mutant(owner: Any, name: str, old: str, new: str, also: tuple[Any, ...] = ()) -> Iterator[None]:
    func = inspect.getattr_static(owner, name)
    source = textwrap.dedent(inspect.getsource(func))
    assert source.count(old) == 1, f"snippet not found once in {name}: {old!r}"
    namespace: dict[str, Any] = dict(func.__globals__)
    exec(compile(source.replace(old, new), f"<mutant of {name}>", "exec"), namespace)
    broken = namespace[name]
    with ExitStack() as stack:
        for target in (owner, *also):
            stack.enter_context(mock.patch.object(target, name, broken))
        yield


def expect_caught(
    run: Callable[..., None], strategy: st.SearchStrategy[Any], n: int, *extra: Any
) -> None:
    """Run the property until it fails; the failure must be an assertion."""

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.tuples(strategy, *extra))
    def prop(args: tuple[Any, ...]) -> None:
        run(*args)

    with pytest.raises(AssertionError):
        prop()


EVAL = (protocol.log.state, "evaluate")
EVAL_ALSO = (protocol.log.account,)
#: the ledger's incremental rules: the properties judge the states it gives
RULES = protocol.log.rules.Verdicts


#: histories heavy in revocations and mutual revocations (rule 7's races)
race_cases = st.builds(
    OrderCase,
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 3, 7, 131, 135]),
            st.integers(0, 2**16 - 1),
            st.integers(0, 2**16 - 1),
        ),
        min_size=6,
        max_size=24,
    ),
)


def test_convergence_catches_arrival_dependent_tie_break() -> None:
    # Two final revocations of one device: the one recorded (and shown as
    # ending it) is the first to arrive instead of the lowest id.
    with mutant(
        RULES,
        "_final_revocation",
        "final = tuple(sorted((*final, i), key=lambda v: events[v].id))",
        "final = (*final, i)",
    ):
        # The incremental check would catch it too; turn it off to show the
        # order property does.
        check = functools.partial(check_convergence, incremental=False)
        expect_caught(check, race_cases, 300, st.data())


def test_incremental_check_catches_a_broken_incremental_rule() -> None:
    # A final revocation voids nothing its target signed before.
    with mutant(
        RULES, "_final_revocation", "if anc_mask >> y & 1:\n            continue", "continue"
    ):
        expect_caught(check_convergence, order_cases, 300, st.data())


def test_incremental_check_catches_a_broken_reference() -> None:
    with mutant(*EVAL, "if not (anc[v] >> j) & 1:", "if False:", also=EVAL_ALSO):
        expect_caught(check_convergence, order_cases, 300, st.data())


def test_context_check_catches_a_merge_that_forgets_revocations() -> None:
    # At a merge, a device revoked on one branch stays active.
    with mutant(
        protocol.log.context,
        "merge",
        "if revoked_here(key):\n            continue",
        "if False:\n            continue",
        also=EVAL_ALSO,
    ):
        expect_caught(check_convergence, order_cases, 500, st.data())


def test_revocation_property_catches_missing_rule4() -> None:
    with mutant(RULES, "_verdict", "r = self._r4.get(x)", "r = None"):
        expect_caught(check_revocation_dominates, attack_cases, 500)


def test_revocation_property_catches_missing_rule5() -> None:
    with mutant(RULES, "_verdict", "if sadders and self._events[x].kind in _RULE5:", "if False:"):
        expect_caught(check_revocation_dominates, attack_cases, 500)


def test_recover_property_catches_missing_rule2() -> None:
    with mutant(RULES, "_verdict", "r = self._r2.get(x)", "r = None"):
        expect_caught(check_recover_ends_attack, attack_cases, 500)


def test_recover_property_catches_missing_rule6_removal() -> None:
    with mutant(RULES, "_recover", "removed[key] = i", "pass"):
        expect_caught(check_recover_ends_attack, attack_cases, 500)


def test_union_property_catches_overeager_dispute() -> None:
    # Any two concurrent final revocations flagged as a dispute.
    with mutant(RULES, "disputes", "for v1 in by_signer.get(target, ()):", "for v1 in finals:"):
        expect_caught(check_concurrent_union, concurrent_cases, 500)


def test_union_property_catches_overeager_rule4() -> None:
    # A revocation voiding every concurrent event, whoever signed it.
    with mutant(
        RULES, "_final_revocation", "for y in self._signed().get(target, ()):", "for y in range(i):"
    ):
        expect_caught(check_concurrent_union, concurrent_cases, 500)


def test_bad_input_property_catches_missing_authorisation() -> None:
    # Any signer counts as the first active device.
    with mutant(
        AccountLog,
        "check",
        "n = find(ks, event.signer)",
        "n = find(ks, event.signer) if event.signer in ks[0] else 0 if ks[0] else None",
    ):
        expect_caught(check_bad_input_harmless, bad_cases, 500)


def test_bad_input_property_catches_missing_signature_check() -> None:
    # Every signature check (event and proof of possession) passes.
    with mock.patch.object(protocol.core.crypto, "verify", lambda *args: None):
        expect_caught(check_bad_input_harmless, bad_cases, 500)


def test_revocation_property_catches_clock_based_rule4() -> None:
    # "The revocation wins over what its target signed later by the clock":
    # the thief backdates nothing here, yet events the owner never saw but
    # which were signed earlier survive the revocation.
    with mutant(
        RULES,
        "_final_revocation",
        "if anc_mask >> y & 1:\n            continue",
        "if anc_mask >> y & 1 or self._events[y].timestamp <= event.timestamp:\n"
        "            continue",
    ):
        expect_caught(check_revocation_dominates, attack_cases, 1000)
