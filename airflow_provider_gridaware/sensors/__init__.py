"""Sensors that hold a task until its grid window."""

from __future__ import annotations
