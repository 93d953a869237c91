"""Airflow hooks for grid signals: thin shells over :mod:`airflow_provider_gridaware.sources`."""

from __future__ import annotations
