"""The jobs core's cron catch-up: the latest time due, found without listing every missed time."""

from __future__ import annotations

import time

from scheduler_sdk.frameworks.jobs.core import MISSED_HORIZON, _latest_due
from scheduler_sdk.frameworks.jobs.cron import CronSchedule

NOW = 1893456030.0  # 2030-01-01 00:00:30 UTC


def test_an_every_minute_job_down_for_a_year_is_one_short_look() -> None:
    cron = CronSchedule.parse("* * * * *")
    started = time.perf_counter()
    assert _latest_due(cron, NOW - MISSED_HORIZON, NOW, "UTC") == NOW - 30
    assert time.perf_counter() - started < 1.0  # half a million times listed would take far longer


def test_the_latest_time_of_a_rare_schedule_and_none_when_nothing_is_due() -> None:
    monthly = CronSchedule.parse("0 3 1 * *")  # 03:00 on the 1st
    assert _latest_due(monthly, NOW - 90 * 86400, NOW, "UTC") == NOW - 30 - 86400 * 31 + 3 * 3600
    assert _latest_due(monthly, NOW - 3600, NOW, "UTC") is None
    every_five = CronSchedule.parse("*/5 * * * *")
    assert _latest_due(every_five, NOW - 1200, NOW, "UTC") == NOW - 30
    assert _latest_due(every_five, NOW - 31, NOW, "UTC") == NOW - 30
    assert _latest_due(every_five, NOW - 30, NOW, "UTC") is None  # (since, now]: a time handled is not due again
