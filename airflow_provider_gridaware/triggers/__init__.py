"""Deferrable triggers: they run in the triggerer's event loop and hold no worker slot."""

from __future__ import annotations
