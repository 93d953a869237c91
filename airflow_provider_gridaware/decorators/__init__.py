"""Task decorators registered through provider info (``@task.gridaware``)."""

from __future__ import annotations
