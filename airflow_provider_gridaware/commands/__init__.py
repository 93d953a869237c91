"""Implementations of the ``gridaware`` subcommands (one module each)."""

from __future__ import annotations
