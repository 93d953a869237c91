"""Pure mapping rules of the custom REST source: paths, times, the token cache."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from airflow_provider_gridaware.signals import MalformedPayloadError, SourceConfigError
from airflow_provider_gridaware.sources.rest import LocalTimeReader, TokenCache, render_path, resolve_path
from airflow_provider_gridaware.sources.settings import SourceSettings

UTC = timezone.utc
SETTINGS = SourceSettings(conn_id="rest_unit", base_url="https://utility.example/api")


def test_resolve_path_walks_objects_and_lists():
    body = {"a": [{"b": {"c": 5}}, {"b": {"c": 6}}]}
    assert resolve_path(body, ("a", "1", "b", "c"), source="s", what="records_path") == 6
    assert resolve_path(body, (), source="s", what="records_path") is body
    with pytest.raises(MalformedPayloadError, match=r"body\.a has 2 items, no \[2\]"):
        resolve_path(body, ("a", "2"), source="s", what="records_path")
    with pytest.raises(MalformedPayloadError, match=r"body\.a is list, cannot take 'b'"):
        resolve_path(body, ("a", "b"), source="s", what="records_path")


def test_render_path_encodes_values():
    start, end = datetime(2024, 3, 31, 0, 30, 15, 999, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    rendered = render_path(SETTINGS, "actual_path", "z/{zone}?s={start}&e={end}", zone="a b/c&d", start=start, end=end)
    assert rendered == "z/a%20b%2Fc%26d?s=2024-03-31T00:30:15Z&e=2024-04-01T00:00:00Z"
    with pytest.raises(SourceConfigError, match=r"'actual_path' uses \{zone!r\}; the only placeholders"):
        render_path(SETTINGS, "actual_path", "z/{zone!r}", zone="x", start=start, end=end)


def test_epoch_threshold_between_seconds_and_milliseconds():
    reader = LocalTimeReader(None, "s")
    assert reader.start(99_999_999_999, "t") == datetime.fromtimestamp(99_999_999_999, UTC)
    assert reader.start(100_000_000_000, "t") == datetime.fromtimestamp(100_000_000, UTC)
    for bad in (True, None, float("nan"), "", "yesterday", [1]):
        with pytest.raises(MalformedPayloadError):
            reader.start(bad, "t")


def test_fall_back_order_and_gap():
    reader = LocalTimeReader(ZoneInfo("America/New_York"), "s")
    # 2023-11-05 01:30 happens at 05:30Z (EDT) and then 06:30Z (EST).
    assert reader.start("2023-11-05T01:30", "t") == datetime(2023, 11, 5, 5, 30, tzinfo=UTC)
    assert reader.start("2023-11-05T01:30", "t") == datetime(2023, 11, 5, 6, 30, tzinfo=UTC)
    assert reader.point_time("2023-11-05T01:30", "t") == datetime(2023, 11, 5, 5, 30, tzinfo=UTC)
    with pytest.raises(MalformedPayloadError, match="does not exist in America/New_York"):
        reader.start("2023-03-12T02:15", "t")
    # An aware time is never re-interpreted.
    assert reader.start("2023-11-05T01:30-05:00", "t") == datetime(2023, 11, 5, 6, 30, tzinfo=UTC)


def test_token_cache_margin_and_credentials():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("c", "fp", "tok", 100)
    now[0] = 89.9
    assert cache.get("c", "fp") == "tok"
    assert cache.get("c", "other-credentials") is None
    now[0] = 90.0  # 10 % margin on a 100 s token
    assert cache.get("c", "fp") is None
    cache.put("c", "fp", "tok2", None)
    cache.invalidate("c", "tok")  # an older token: the newer one stays
    assert cache.get("c", "fp") == "tok2"
    cache.invalidate("c", "tok2")
    assert cache.get("c", "fp") is None
