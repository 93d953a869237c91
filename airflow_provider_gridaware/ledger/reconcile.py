"""Reconciliation: which executed tries of grid-aware tasks have no ledger record (pure).

The ledger is written from our own end paths, and a write that fails is logged, never raised (the work is
done). What such a failure, or a worker killed between the work and its end path, left out is found by
comparing the tries Airflow says ran (its REST API's task instances and their tries) with the keys the ledger
holds. A try that *succeeded* must have a record; a failed one may lack one (it may have failed before its
work started), so those are listed apart.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_gridaware.ledger.records import TryKey

#: What Airflow's API calls the task types that write ledger records (``operator``, or ``operator_name`` for a
#: decorated task). A subclass of ours shows under its own name: pass it as well.
LEDGER_OPERATORS: frozenset[str] = frozenset(
    {
        "@task.gridaware",
        "_GridAwareDecoratedOperator",
        "GridWindowSensor",
        "GridAwareKubernetesJobOperator",
        "GridAwareBatchOperator",
    }
)


@dataclass(frozen=True)
class ExecutedTry:
    """One try as Airflow records it.

    :param key: which try.
    :param state: its final state (``success``, ``failed`` ...).
    :param operator: its task's type as the API names it.
    """

    key: TryKey
    state: str
    operator: str


@dataclass(frozen=True)
class Reconciliation:
    """The outcome.

    :param checked: tries of ledger-writing tasks compared.
    :param missing: succeeded tries the ledger does not hold (lost records).
    :param failed_unrecorded: failed tries the ledger does not hold (lost, or failed before their work ran).
    """

    checked: int
    missing: tuple[ExecutedTry, ...]
    failed_unrecorded: tuple[ExecutedTry, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        if not self.checked:
            return "no try of a grid-aware task ended in the period: nothing to reconcile"
        text = f"{self.checked} tries of grid-aware tasks checked: "
        text += "every succeeded try has its record" if self.complete else f"{len(self.missing)} succeeded without one"
        if self.failed_unrecorded:
            text += f"; {len(self.failed_unrecorded)} failed tries have none (lost, or failed before their work ran)"
        return text


def reconcile(tries: Iterable[ExecutedTry], held: Collection[TryKey]) -> Reconciliation:
    """Compare the tries Airflow ran with the keys the ledger holds.

    :param tries: the tries of ledger-writing tasks (see :func:`executed_tries`).
    :param held: which of their keys the ledger holds (``LedgerStore.keys``).
    """
    checked = list(tries)
    missing = tuple(t for t in checked if t.state == "success" and t.key not in held)
    failed = tuple(t for t in checked if t.state == "failed" and t.key not in held)
    return Reconciliation(len(checked), missing, failed)


def executed_try(row: Mapping[str, Any], operators: Collection[str] = LEDGER_OPERATORS) -> ExecutedTry | None:
    """The try an API task-instance (or try) row describes, if its task writes ledger records and it ended.

    :param row: one item of ``taskInstances/list`` or of ``.../tries``.
    :param operators: the ledger-writing task types.
    """
    operator = next((str(row[f]) for f in ("operator_name", "operator") if row.get(f) in operators), None)
    if operator is None or row.get("state") not in ("success", "failed"):
        return None
    key = TryKey(
        str(row["dag_id"]),
        str(row["dag_run_id"]),
        str(row["task_id"]),
        int(row.get("map_index", -1)),
        int(row["try_number"]),
    )
    return ExecutedTry(key, str(row["state"]), operator)
