"""The fault matrix (issue #10): every fault against every step of a live account's life, on the
simulator over HTTP, each cell held to the same end state (tests/faults/harness.py).

A cell: the clean steps the target needs, the fault aimed at the target's request, the service's
own handling (an exception it raises is recorded, not a failure), one reconciliation run (after
any rate-limit block has passed, with every `submitting` intent counted stale), then the checker.

Targets (harness.TARGETS): the entry (opened with TP and SL), the TP leg, the SL leg, the cancel
of the stop at a close, the cancel of the old stop when a second entry replaces the protection,
the close; and the TP / SL leg again on an account that keeps unprotected positions, with a fault
that outlasts the service's handling (armed again before the reconciliation run, it meets
reconciliation's re-placement of the leg, if there is one).
Faults (harness.FAULTS): the simulator's aimed rules, and `db_drop` (the database lost between
the exchange's answer and the booking).

A cell that fails on today's engine is listed in DEFECTS with what goes wrong; it runs as a
strict xfail, so the suite stays green while the defect stands and turns red (XPASS) when it is
fixed: then delete its line.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from execution.services import ExecutionService
from execution.services.reconciliation import reconcile_account
from tests.factories import LiveV1AccountFactory
from tests.faults.harness import (
    FAULTS,
    READ_TIMEOUT,
    TARGETS,
    HarnessError,
    aim_at_simulator,
    database_drop,
    describe_state,
    end_state_violations,
    no_sleep,
    violation_kinds,
    wait_out_rate_limits,
)


@dataclass(frozen=True)
class Defect:
    reason: str  # what goes wrong, in one line
    kinds: frozenset[str]  # the checker's violations it shows as (harness.violation_kinds)


PROTECTION_DIFFERS, UNPROTECTED = "protective orders differ", "unprotected"


# THE TABLE: the cells that fail on today's engine (none now: each defect it listed was fixed). (fault, target): harness.FAULTS x harness.TARGETS.
# A listed cell must fail its end-state check with these kinds of violation (strict xfail); a fix makes
# it pass (XPASS, red): delete its line. A listed cell failing otherwise is a plain failure (DefectChanged).
DEFECTS: dict[tuple[str, str], Defect] = {}


class DefectChanged(Exception):
    """A listed cell failed, but not as its line says: the line is out of date."""


def cells():
    for fault in FAULTS:
        for target in TARGETS:
            if fault not in TARGETS[target].faults:
                continue
            defect = DEFECTS.get((fault, target))
            # raises=AssertionError: only the end-state check may fail as expected; a harness error or a
            # changed defect is a real failure
            marks = [pytest.mark.xfail(strict=True, reason=defect.reason, raises=AssertionError)] if defect else []
            if fault == "db_drop":  # autocommit, as in production: the lost statement is not in a test transaction
                marks.append(pytest.mark.django_db(transaction=True))
            yield pytest.param(fault, target, id=f"{fault}-{target}", marks=marks)


@pytest.fixture
def live(sim, db, settings, request):
    settings.ASTER_READ_TIMEOUT = READ_TIMEOUT
    settings.EXECUTION_INTENT_STALE_SECONDS = 0  # the reconciliation run comes after the intent went stale
    return LiveV1AccountFactory(**TARGETS[request.node.callspec.params["target"]].account)


def run_cell(sim, account, monkeypatch, fault: str | None, target_name: str):
    target = TARGETS[target_name]
    if target.setup is not None:
        target.setup(ExecutionService(account, sleep=no_sleep))
        if violations := end_state_violations(account, sim, entries=target.entries):
            raise HarnessError(f"not a clean start: {violations}")
    service = ExecutionService(account, sleep=no_sleep)
    raised = None
    if fault == "db_drop":
        with database_drop(sim, target, monkeypatch) as drop:
            try:
                target.act(service)
            except Exception as exc:  # the test is about the end state
                raised = exc
        if not drop.fired:
            raise HarnessError("the target's request never reached the exchange")
    else:
        rule = aim_at_simulator(sim, fault, target) if fault else None
        try:
            target.act(service)
        except Exception as exc:
            raised = exc
        if rule is not None and rule.hits == 0:
            raise HarnessError(f"the service's handling never met the fault ({rule})")
    wait_out_rate_limits()
    if fault and fault != "db_drop" and target.again:
        sim.faults.clear_rules()
        aim_at_simulator(sim, fault, target)
    run = reconcile_account(account, sleep=no_sleep)
    return raised, run


@pytest.mark.parametrize(("fault", "target"), cells())
def test_fault_matrix(sim, live, monkeypatch, fault, target):
    raised, run = run_cell(sim, live, monkeypatch, fault, target)
    violations = end_state_violations(live, sim, entries=TARGETS[target].entries)
    items = [f"{item.kind}: {item.outcome} {item.message}" for item in run.items.all()]
    detail = f"service raised {raised!r}; reconciliation {run.status} {items}\n{describe_state(live, sim)}"
    defect = DEFECTS.get((fault, target))
    if violations and defect is not None and violation_kinds(violations) != defect.kinds:
        raise DefectChanged(f"expected {sorted(defect.kinds)}, got {violations}\n{detail}")
    assert violations == [], detail


@pytest.mark.parametrize("target", TARGETS)
def test_the_checker_passes_a_clean_run(sim, live, monkeypatch, target):
    raised, run = run_cell(sim, live, monkeypatch, None, target)
    assert raised is None
    assert run.status == "in_sync", [f"{i.kind}: {i.message}" for i in run.items.all()]
    assert end_state_violations(live, sim, entries=TARGETS[target].entries) == []
