"""Parsing ``datastore schedule`` options (no server needed; the server side is in test_deployments)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from datastore.errors import InvalidSchedule
from datastore_deployments.schedule import build_schedule, describe, parse_every


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("15m", 900), ("1h30m", 5400), ("1d", 86400), (" 2H ", 7200)])
def test_every_accepts_units(text: str, seconds: int) -> None:
    assert parse_every(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "10", "5x", "0s", "1h and 5m"])
def test_every_refuses_the_rest(text: str) -> None:
    with pytest.raises(InvalidSchedule, match="--every"):
        parse_every(text)


def test_cron_interval_and_timezone() -> None:
    assert describe(build_schedule("0 3 * * *", None, "Europe/Berlin")) == "cron '0 3 * * *' (Europe/Berlin)"
    assert describe(build_schedule(None, "6h", None)) == "every 6:00:00 (UTC)"
    with pytest.raises(InvalidSchedule, match=r"invalid --cron '61 \* \* \* \*'"):
        build_schedule("61 * * * *", None, None)
    with pytest.raises(InvalidSchedule, match="invalid --timezone 'Mars/Olympus': use an IANA name"):
        build_schedule(None, "1h", "Mars/Olympus")
    with pytest.raises(InvalidSchedule, match="give exactly one of --cron"):
        build_schedule("0 3 * * *", "1h", None)
