"""Dispatch operators: carry the grid-aware decision to where the work runs (Kubernetes, AWS Batch)."""
