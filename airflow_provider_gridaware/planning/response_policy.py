"""What the fleet does when the grid calls an event: one rule, per priority class and per event signal.

* **critical** keeps running, whatever the event;
* **flexible** work checkpoints and waits until the event ends (``CHECKPOINT``);
* **batch** work stops and its DAGs are paused (``STOP``).

Which signals call for it is configurable: an OpenADR SIMPLE level from a class's threshold (default: level 1
for flexible and batch), a price above a threshold in its currency (default: none, prices only steer the
planner), and an import capacity limit. A capacity limit sheds the least valuable work first (batch before
flexible, then the lowest weight, then the most power) until the fleet's planned power is under the limit;
the power of a task is its declared GPU count times the per-GPU power, or a default.

The same policy says where waiting work may not start (:meth:`ResponsePolicy.sheds_waiting`, what
``event_constraints.shedding_spans`` and so every waiting ``GridWindowTrigger`` uses) and what in-flight work
does (``planning/grid_response.py``). Pure: no Airflow import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.signals.grid_event import EventInterval, EventSignal, EventSignalKind


class ResponseAction(str, Enum):
    """What one piece of in-flight work does during an event."""

    KEEP = "keep"  # keeps running
    CHECKPOINT = "checkpoint"  # checkpoints (SIGTERM, grace period) and waits until the event is over
    STOP = "stop"  # stops; its DAGs are paused until the event is over

    @property
    def pauses(self) -> bool:
        return self is not ResponseAction.KEEP


#: the order a capacity limit sheds in: batch first, then flexible; critical never.
SHED_ORDER: dict[PriorityClass, int] = {PriorityClass.BATCH: 0, PriorityClass.FLEXIBLE: 1}

DEFAULT_GPU_KW = 0.7  # an H100 SXM at its 700 W board limit
DEFAULT_TASK_KW = 1.0  # a task that declares no GPUs: a CPU node's share


class PolicyError(ValueError):
    """A response policy's configuration is wrong; the message names the key and what it should be."""


@dataclass(frozen=True)
class ResponsePolicy:
    """The response rule: which events pause which priority class, and how.

    :param actions: per priority class, what it does when an event calls for shedding (critical is always
        ``KEEP``; giving it anything else is an error).
    :param simple_min_level: per priority class, the OpenADR SIMPLE level from which the class is shed (1-3;
        4 = never by SIMPLE).
    :param price_thresholds: per currency (ISO 4217), the price in currency/MWh above which non-critical
        work is shed; a currency not listed never sheds.
    :param capacity_limit: shed for import capacity limits (the least valuable work first).
    :param gpu_kw: power per declared GPU, kW.
    :param default_task_kw: power of a task that declares no GPUs and no power, kW.
    :param include_test_events: act on events the party marked as tests.
    """

    actions: Mapping[PriorityClass, ResponseAction] = field(
        default_factory=lambda: {
            PriorityClass.CRITICAL: ResponseAction.KEEP,
            PriorityClass.FLEXIBLE: ResponseAction.CHECKPOINT,
            PriorityClass.BATCH: ResponseAction.STOP,
        }
    )
    simple_min_level: Mapping[PriorityClass, int] = field(
        default_factory=lambda: {PriorityClass.FLEXIBLE: 1, PriorityClass.BATCH: 1}
    )
    price_thresholds: Mapping[str, float] = field(default_factory=dict)
    capacity_limit: bool = True
    gpu_kw: float = DEFAULT_GPU_KW
    default_task_kw: float = DEFAULT_TASK_KW
    include_test_events: bool = False

    def __post_init__(self) -> None:
        actions = {PriorityClass(k): ResponseAction(v) for k, v in self.actions.items()}
        for cls in PriorityClass:
            actions.setdefault(cls, ResponseAction.KEEP)
        if actions[PriorityClass.CRITICAL] is not ResponseAction.KEEP:
            raise PolicyError("actions.critical: critical work always keeps running (give 'keep' or leave it out)")
        levels = {PriorityClass(k): int(v) for k, v in self.simple_min_level.items()}
        for cls, level in levels.items():
            if not 1 <= level <= 4:
                raise PolicyError(f"simple_min_level.{cls.value}: {level} is not 1-3 (or 4 = never)")
        for currency, threshold in self.price_thresholds.items():
            if len(currency) != 3 or not currency.isalpha():
                raise PolicyError(f"price_thresholds: {currency!r} is not an ISO 4217 currency code")
            if not threshold == threshold:  # NaN
                raise PolicyError(f"price_thresholds.{currency}: not a number")
        for name in ("gpu_kw", "default_task_kw"):
            value = getattr(self, name)
            if not value > 0:
                raise PolicyError(f"{name}: must be a positive power in kW, not {value!r}")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "simple_min_level", levels)
        object.__setattr__(self, "price_thresholds", {c.upper(): float(t) for c, t in self.price_thresholds.items()})

    # -- configuration ---------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | None) -> ResponsePolicy:
        """A policy from a dict or its JSON text (an Airflow Variable, the provider config); ``None``: defaults.

        Keys: ``actions`` (``{"flexible": "checkpoint", "batch": "stop"}``), ``simple_min_level``
        (``{"flexible": 2, "batch": 1}``), ``price_thresholds`` (``{"EUR": 300}``), ``capacity_limit``,
        ``gpu_kw``, ``default_task_kw``, ``include_test_events``. Missing keys keep their defaults.
        """
        if config is None or config == "":
            return cls()
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except ValueError as exc:
                raise PolicyError(f"the response policy is not valid JSON: {exc}") from None
        if not isinstance(config, Mapping):
            raise PolicyError(f"the response policy must be a JSON object, not {type(config).__name__}")
        known = {
            "actions",
            "simple_min_level",
            "price_thresholds",
            "capacity_limit",
            "gpu_kw",
            "default_task_kw",
            "include_test_events",
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise PolicyError(f"unknown response policy key(s) {unknown}; known: {sorted(known)}")
        base = cls()
        try:
            actions = {
                **base.actions,
                **{PriorityClass(k): ResponseAction(v) for k, v in dict(config.get("actions") or {}).items()},
            }
            levels = {
                **base.simple_min_level,
                **{PriorityClass(k): v for k, v in dict(config.get("simple_min_level") or {}).items()},
            }
        except ValueError as exc:
            raise PolicyError(
                f"response policy: {exc} (classes: critical, flexible, batch; actions: keep, checkpoint, stop)"
            ) from None
        return replace(
            base,
            actions=actions,
            simple_min_level=levels,
            price_thresholds=dict(config.get("price_thresholds") or {}),
            capacity_limit=bool(config.get("capacity_limit", base.capacity_limit)),
            gpu_kw=float(config.get("gpu_kw", base.gpu_kw)),
            default_task_kw=float(config.get("default_task_kw", base.default_task_kw)),
            include_test_events=bool(config.get("include_test_events", base.include_test_events)),
        )

    def to_config(self) -> dict[str, Any]:
        """The policy as the dict :meth:`from_config` reads (for logs and the docs table)."""
        return {
            "actions": {k.value: v.value for k, v in self.actions.items()},
            "simple_min_level": {k.value: v for k, v in self.simple_min_level.items()},
            "price_thresholds": dict(self.price_thresholds),
            "capacity_limit": self.capacity_limit,
            "gpu_kw": self.gpu_kw,
            "default_task_kw": self.default_task_kw,
            "include_test_events": self.include_test_events,
        }

    # -- the rule ----------------------------------------------------------------------------------------
    def action(self, priority_class: PriorityClass) -> ResponseAction:
        """What work of ``priority_class`` does when an event sheds it."""
        return self.actions[PriorityClass(priority_class)]

    def sheds(self, signal: EventSignal, interval: EventInterval, priority_class: PriorityClass) -> bool:
        """Whether ``interval`` of ``signal`` sheds work of ``priority_class`` regardless of the fleet's load.

        Capacity limits are not decided here (they depend on the fleet: :func:`capacity_shed`), except for
        work that has not started (:meth:`sheds_waiting`).
        """
        cls = PriorityClass(priority_class)
        if not self.action(cls).pauses:
            return False
        if signal.kind is EventSignalKind.SIMPLE:
            return interval.value >= self.simple_min_level.get(cls, 4)
        if signal.kind is EventSignalKind.PRICE:
            threshold = self.price_thresholds.get((signal.currency or "").upper())
            return threshold is not None and interval.value > threshold
        return False

    def sheds_waiting(self, signal: EventSignal, interval: EventInterval, priority_class: PriorityClass) -> bool:
        """Whether work of ``priority_class`` that has not started may not start inside ``interval``.

        As :meth:`sheds`, and a capacity limit keeps all sheddable work from starting (a waiting task cannot
        know the fleet's load; starting it could push the site over the limit).
        """
        if signal.kind is EventSignalKind.IMPORT_CAPACITY_LIMIT:
            return self.capacity_limit and self.action(PriorityClass(priority_class)).pauses
        return self.sheds(signal, interval, priority_class)

    def task_kw(self, *, gpus: float | None = None, power_kw: float | None = None) -> float:
        """The planned power of one task: its declared power, else its GPUs times :attr:`gpu_kw`, else the default."""
        if power_kw is not None and power_kw > 0:
            return float(power_kw)
        if gpus is not None and gpus > 0:
            return float(gpus) * self.gpu_kw
        return self.default_task_kw


DEFAULT_POLICY = ResponsePolicy()


def response_table(policy: ResponsePolicy = DEFAULT_POLICY) -> list[tuple[str, str, str, str]]:
    """``(signal, critical, flexible, batch)`` rows: what each class does, for the docs and logs."""

    def cell(cls: PriorityClass, sheds: bool) -> str:
        return policy.action(cls).value if sheds else ResponseAction.KEEP.value

    rows = []
    for level in (1, 2, 3):
        rows.append(
            (
                f"SIMPLE level {level}",
                *(cell(c, level >= policy.simple_min_level.get(c, 4)) for c in PriorityClass),
            )
        )
    for currency, threshold in sorted(policy.price_thresholds.items()):
        rows.append((f"price above {threshold:g} {currency}/MWh", *(cell(c, True) for c in PriorityClass)))
    if policy.capacity_limit:
        rows.append(
            (
                "import capacity limit",
                *(
                    cell(c, True) + (" (least valuable first)" if c in SHED_ORDER and policy.action(c).pauses else "")
                    for c in PriorityClass
                ),
            )
        )
    return [(r[0], r[1], r[2], r[3]) for r in rows]
