"""What the Grid page shows, computed from plain data (pure core; no Airflow import).

The Airflow plugin (:mod:`airflow_provider_gridaware.plugins`) gathers the inputs (deferred tasks' trigger
requests, the ledger, the event store, the zones' signals) and serves what these modules make of them.
"""
