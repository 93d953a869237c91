"""The simulated APIs, one module each, serving the real URL paths and payload shapes under a prefix.

These modules import FastAPI at the top: only :mod:`airflow_provider_gridaware.simulator.app` imports
them, and only when a simulator starts.
"""

from __future__ import annotations
