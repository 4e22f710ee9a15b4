"""The structure the design promises, checked on the code itself.

- Apps depend one way and nothing cycles (import-linter's contracts in pyproject.toml).
- A model's `status` is written only by `accounts.audit` (transition, transition_unsaved,
  bulk_transition), so that every status change is checked against its TRANSITIONS table and
  leaves an event. The scan reads the syntax tree of every module of ours.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("accounts", "config", "decisions", "execution", "secret_value")
SKIPPED_PARTS = {"migrations", "aster"}  # migrations; the simulator's own in-memory orders
THE_ONE_PLACE = Path("accounts/audit.py")
STATEFUL_MODELS = {"Trade", "Position", "PendingOrder", "Decision", "ReconciliationRun"}
WRITING_CALLS = {"update", "create", "bulk_create", "get_or_create", "update_or_create"}
BULK_WRITES = {"bulk_update", "bulk_update_rows"}
# A batch writer may write "status" in bulk for rows that went through transition_unsaved in the
# same transaction: the property test in test_fill_paths.py holds its events to the per-order path's.
BULK_STATUS_ALLOWED = {Path("execution/services/paper/batch_fills.py")}
RAW_SQL_STATUS = re.compile(r"\bSET\b\s+(?:status|[^;]*?,\s*\"?status\"?)\s*=", re.IGNORECASE)


def status_writes(source: str, path: Path) -> list[str]:
    """Where `source` writes a model's status outside accounts.audit: 'line: what'."""
    if path == THE_ONE_PLACE:
        return []
    tree = ast.parse(source)
    constants = _module_constants(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and leaf.attr == "status":
                        found.append(f"{node.lineno}: assigns .status")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if any(k.arg == "status" for k in node.keywords) and (name in WRITING_CALLS or name in STATEFUL_MODELS):
                found.append(f"{node.lineno}: {name}(status=...)")
            if name == "save" and any(
                k.arg == "update_fields" and _mentions_status(k.value, constants) for k in node.keywords
            ):
                found.append(f"{node.lineno}: save(update_fields=[... 'status' ...])")
            if name in BULK_WRITES and path not in BULK_STATUS_ALLOWED:
                fields = [*node.args[1:], *(k.value for k in node.keywords if k.arg == "fields")]
                if any(_mentions_status(arg, constants) for arg in fields):
                    found.append(f"{node.lineno}: {name}(..., ['status', ...])")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and RAW_SQL_STATUS.search(node.value):
            found.append(f"{node.lineno}: raw SQL sets status")
    return found


def _call_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return node.func.id if isinstance(node.func, ast.Name) else ""


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    return {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _mentions_status(node: ast.expr, constants: dict[str, ast.expr]) -> bool:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    return any(isinstance(leaf, ast.Constant) and leaf.value == "status" for leaf in ast.walk(node))


def our_modules() -> list[Path]:
    paths = []
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if not SKIPPED_PARTS & set(relative.parts):
                paths.append(relative)
    return paths


def test_statuses_change_only_through_the_audited_functions():
    offenders = {
        str(path): writes for path in our_modules() if (writes := status_writes((ROOT / path).read_text(), path))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "snippet",
    [
        "order.status = 'cancelled'",
        "order.status, order.closed_at = 'filled', now",
        "PendingOrder.objects.filter(pk=1).update(status='triggered')",
        "Trade(account=a, status=TradeStatus.FILLED)",
        "Trade.objects.create(status='filled')",
        "order.save(update_fields=['status'])",
        "FIELDS = ['status', 'trade']\nbulk_update_rows(PendingOrder, rows, FIELDS)",
        "PendingOrder.objects.bulk_update(rows, ['status'])",
        "cursor.execute(\"UPDATE execution_trade SET price = 1, status = 'filled'\")",
    ],
)
def test_the_scan_sees_each_way_of_writing_a_status(snippet):
    assert status_writes(snippet, Path("execution/services/somewhere.py"))


@pytest.mark.parametrize(
    "snippet",
    [
        "PendingOrder.objects.filter(status='pending')",
        "Response(body, status=409)",
        "transition(order, to_status='cancelled', account=account)",
        "cursor.execute(\"UPDATE p SET mark_price = 1 WHERE p.status = 'open'\")",
    ],
)
def test_the_scan_leaves_reads_alone(snippet):
    assert status_writes(snippet, Path("execution/services/somewhere.py")) == []


def test_apps_depend_one_way_and_nothing_cycles(monkeypatch):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(no_cache=True, no_logo=True) == 0, "import contracts broken: run `lint-imports`"
