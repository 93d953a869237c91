"""The carbon ledger: one record per executed try of a grid-aware task (pure core; no Airflow import)."""
