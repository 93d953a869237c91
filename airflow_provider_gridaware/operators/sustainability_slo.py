"""SustainabilitySloOperator: check sustainability SLOs against the ledger and alert through notifiers.

Schedule it like any check (daily, say). Each SLO is measured over its rolling period from the ledger
(:mod:`~airflow_provider_gridaware.ledger.slo`); every breached SLO calls each notifier once, with the
breach in the context (``slo_status``: the :class:`SloStatus`; ``slo_breach``: one sentence), so the
notifiers Airflow users already configure (Slack, SMTP, ...) carry the alert. The statuses are the XCom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier, BaseOperator

from airflow_provider_gridaware.ledger.slo import SloStatus, SustainabilitySlo, evaluate, slos_from
from airflow_provider_gridaware.times import current_clock

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gridaware.ledger.records import LedgerReader


class SloBreachedError(RuntimeError):
    """Raised with ``fail_on_breach``: the message lists every breached SLO."""


class SustainabilitySloOperator(BaseOperator):
    """Measure sustainability SLOs from the ledger; a breach calls the notifiers.

    :param slos: the SLOs (:class:`SustainabilitySlo` or their JSON form, see ``SustainabilitySlo.from_dict``).
    :param notifiers: called once per breached SLO (any ``BaseNotifier``).
    :param dag_tags: each DAG's tags, for SLOs set per tag (a worker cannot read Airflow's metadata database).
    :param fail_on_breach: also fail the task when an SLO is breached (after notifying).
    """

    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        slos: Sequence[SustainabilitySlo | Mapping[str, Any]],
        notifiers: BaseNotifier | Sequence[BaseNotifier] = (),
        dag_tags: Mapping[str, Sequence[str]] | None = None,
        fail_on_breach: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Parsed now: a bad SLO fails at DAG parse time, naming it.
        self.slos = slos_from(slos)
        self.notifiers = [notifiers] if isinstance(notifiers, BaseNotifier) else list(notifiers)
        self.dag_tags = {dag: list(tags) for dag, tags in (dag_tags or {}).items()}
        self.fail_on_breach = fail_on_breach
        untagged = [s.name for s in self.slos if s.tags and not self.dag_tags]
        if untagged:
            raise ValueError(f"SLOs {untagged} are set per tag: give dag_tags (each DAG's tags)")

    def ledger(self) -> LedgerReader:
        """The ledger's reader (``[gridaware] ledger_reader``)."""
        from airflow_provider_gridaware.hooks.ledger_reader import open_ledger_reader

        return open_ledger_reader()

    def execute(self, context: Context) -> list[dict[str, Any]]:
        reader = self.ledger()
        now = current_clock().now()  # the ledger's time line (GRIDAWARE_CLOCK in the demo)
        statuses: list[SloStatus] = []
        for slo in self.slos:
            covered = {*slo.dag_ids, *(d for d, tags in self.dag_tags.items() if set(tags) & set(slo.tags))}
            records = reader.records(now - slo.period, now, dag_ids=sorted(covered))
            status = evaluate(slo, records, self.dag_tags)
            statuses.append(status)
            (self.log.warning if status.breached else self.log.info)("%s", status.describe())
        breached = [s for s in statuses if s.breached]
        for status in breached:
            for notifier in self.notifiers:
                notifier({**context, "slo_status": status, "slo_breach": status.describe()})
        if breached and self.fail_on_breach:
            raise SloBreachedError("; ".join(s.describe() for s in breached))
        return [s.to_json() for s in statuses]
