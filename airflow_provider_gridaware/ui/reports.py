"""The daily reports on the Grid page: the recent days under the configured report location, and their files.

The location holds one folder per UTC day (``<location>/2026-12-01/report.html`` ...), as
``DailyCarbonReportOperator`` writes them. Only the report's own files can be read, named by a strict
pattern before storage is touched (``report.html``, ``summary.json``, ``records.csv``,
``charts/<name>.png``); a local location also checks that the resolved file stays under the location
(a symbolic link pointing out of it is refused). No Airflow import: the storage is given.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: A day folder's name.
DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
#: The files a report folder may serve, with their media types.
FILE_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "summary.json": "application/json",
    "records.csv": "text/csv; charset=utf-8",
}
CHART_PATTERN = re.compile(r"charts/[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.png")
#: The page lists this many days, newest first.
RECENT_REPORTS = 30


class ReportNotFoundError(LookupError):
    """No such report file (or a name that is not one of a report's files)."""


class StorageFolder(Protocol):
    """What a report location is read through: a :class:`pathlib.Path` or an Airflow ``ObjectStoragePath``."""

    @property
    def name(self) -> str: ...

    def __truediv__(self, name: str) -> Any: ...

    def iterdir(self) -> Any: ...

    def is_dir(self) -> bool: ...


@dataclass(frozen=True)
class ReportDay:
    """One day's report as the page lists it.

    :param day: the UTC day.
    :param files: which of the report's main files exist.
    :param headline: the summary's headline (``None``: no readable summary).
    :param tries: tries reported.
    :param dag_ids: the DAGs the report names (its per-DAG table, waiting and deadline-miss rows).
    :param slos_breached: the SLOs the report found breached.
    :param summary_read: whether its summary could be read (without it, the DAGs it covers are unknown).
    """

    day: date
    files: tuple[str, ...]
    headline: str | None
    tries: int | None
    dag_ids: frozenset[str]
    slos_breached: tuple[str, ...] = ()
    summary_read: bool = False

    def readable_by(self, dag_ids: set[str] | None) -> bool:
        """Whether a user who may read ``dag_ids`` (``None``: every DAG) may see this report: it names no
        DAG they may not read (a report whose summary cannot be read: only those who may read every DAG)."""
        return dag_ids is None or (self.summary_read and self.dag_ids <= dag_ids)

    def to_json(self) -> dict[str, Any]:
        day = self.day.isoformat()
        return {
            "day": day,
            "headline": self.headline,
            "tries": self.tries,
            "slos_breached": list(self.slos_breached),
            "files": {name: f"reports/{day}/{name}" for name in self.files},
        }


def summary_dag_ids(summary: dict[str, Any]) -> frozenset[str]:
    """Every DAG a report's ``summary.json`` names."""
    names = {str(row.get("name")) for row in summary.get("per_dag") or ()}
    names |= {str(row.get("dag_id")) for row in (summary.get("waiting") or {}).get("tasks") or ()}
    names |= {str(row.get("dag_id")) for row in summary.get("deadline_misses") or ()}
    for slo in summary.get("slos") or ():
        names |= {str(d) for d in slo.get("dag_ids") or ()}
        names |= {str(d) for d in (slo.get("covers") or {}).get("dag_ids") or ()}
    return frozenset(names)


def checked_file_name(name: str) -> str:
    """``name`` if it is one of a report's files, else :class:`ReportNotFoundError` (nothing is read)."""
    if name in FILE_TYPES or CHART_PATTERN.fullmatch(name):
        return name
    raise ReportNotFoundError(f"{name!r} is not a file of a daily report")


def checked_day(text: str) -> date:
    """The day a folder name or URL part names, else :class:`ReportNotFoundError`."""
    if not DAY_PATTERN.fullmatch(text):
        raise ReportNotFoundError(f"{text!r} is not a day like 2026-12-01")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReportNotFoundError(f"{text!r} is not a day like 2026-12-01") from None


class ReportShelf:
    """The daily reports under one location.

    :param location: the folder holding a folder per day (a ``Path`` or an ``ObjectStoragePath``).
    :param display: how the page names the location.
    """

    def __init__(self, location: StorageFolder, display: str) -> None:
        self.location = location
        self.display = display

    def days(self, limit: int = RECENT_REPORTS) -> list[ReportDay]:
        """The most recent ``limit`` days with a report folder, newest first."""
        if not self.location.is_dir():
            return []
        found = []
        for child in self.location.iterdir():
            try:
                day = checked_day(child.name)
            except ReportNotFoundError:
                continue  # not a day folder: never listed
            if self._inside(child):
                found.append((day, child))
        found.sort(key=lambda item: item[0], reverse=True)
        return [self._day(day, folder) for day, folder in found[:limit]]

    def _day(self, day: date, folder: Any) -> ReportDay:
        files = tuple(name for name in FILE_TYPES if (folder / name).exists())
        summary: dict[str, Any] = {}
        if "summary.json" in files:
            try:
                summary = json.loads((folder / "summary.json").read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("Grid page: the summary of the report of %s cannot be read: %s", day, exc)
        breached = tuple(str(s.get("name")) for s in summary.get("slos") or () if s.get("status") == "breached")
        return ReportDay(
            day=day,
            files=files,
            headline=summary.get("headline"),
            tries=summary.get("tries"),
            dag_ids=summary_dag_ids(summary),
            slos_breached=breached,
            summary_read=bool(summary),
        )

    def _inside(self, path: Any) -> bool:
        """Whether a local ``path`` resolves under the location (a symbolic link may point out of it);
        object storage has no links."""
        if not isinstance(self.location, Path):
            return True
        return bool(Path(path).resolve().is_relative_to(self.location.resolve()))

    def day(self, day_text: str) -> ReportDay:
        """One day's listing (:class:`ReportNotFoundError` when there is no such folder)."""
        day = checked_day(day_text)
        folder = self.location / day.isoformat()
        if not folder.is_dir() or not self._inside(folder):
            raise ReportNotFoundError(f"no report for {day.isoformat()}")
        return self._day(day, folder)

    def read(self, day_text: str, name: str) -> tuple[bytes, str]:
        """A report file's bytes and media type.

        :param day_text: the day, ``YYYY-MM-DD``.
        :param name: the file, relative to the day's folder.
        :raises ReportNotFoundError: not one of a report's files, not there, or (local) outside the location.
        """
        day = checked_day(day_text)
        name = checked_file_name(name)
        path = self.location / day.isoformat()
        for part in name.split("/"):
            path = path / part
        if not self._inside(path):
            raise ReportNotFoundError(f"{day.isoformat()}/{name} is outside the report location")
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ReportNotFoundError(f"no {name} in the report of {day.isoformat()}") from None
        return data, FILE_TYPES.get(name, "image/png")
