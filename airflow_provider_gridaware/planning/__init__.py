"""Pure planning core (no Airflow import): windows over signal series, later the receding-horizon planner."""

from __future__ import annotations
