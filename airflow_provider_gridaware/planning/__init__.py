"""Pure planning core (no Airflow import): jobs, plans, the vectorised planner, the own forecaster,
the receding-horizon policy and the backtest. See ``docs/planner.md``.

Import the modules you need (``planning.job``, ``planning.plan``, ``planning.planner`` ...): this package
imports nothing itself, so the numpy-free parts (``Job``, ``Plan``) stay cheap for DAG files.
"""

from __future__ import annotations
