"""What a subscriber's cadence means on a digest date: whether their digest is due, which listing dates it
covers, and how many papers it holds by default. Plain functions of dates: no database.

The weekday of a weekly digest is the weekday of its digest date, which is a listing day: the date the
scheduled run computes in ``DIGEST_TIMEZONE`` (``today - DIGEST_LAG_DAYS``), never the subscriber's own
timezone. "Weekly on Friday" is the digest of listing day Friday, mailed by the run after it (Saturday
morning with the default lag of one day)."""

from __future__ import annotations

from datetime import date, timedelta

from digest.models import DEFAULT_MAX_PAPERS, FREQUENCIES

PERIOD_DAYS = {"daily": 1, "weekly": 7}
assert set(PERIOD_DAYS) == set(FREQUENCIES)


def is_due(frequency: str, weekday: int | None, day: date) -> bool:
    """Whether a subscriber with this cadence gets a digest for listing day ``day``."""
    if frequency == "weekly":
        return weekday is not None and day.weekday() == weekday
    return True


def next_due(frequency: str, weekday: int | None, day: date) -> date:
    """The first digest date on or after ``day`` for this cadence."""
    if frequency == "weekly" and weekday is not None:
        return day + timedelta(days=(weekday - day.weekday()) % 7)
    return day


def reach_days(frequency: str, window_days: int) -> int:
    """How many listing days, ``day`` included, one digest may cover at most: one period (a day, a week)
    plus the catch-up of ``window_days - 1`` days after missed digests (``DIGEST_RANK_WINDOW_DAYS``)."""
    return PERIOD_DAYS.get(frequency, 1) + window_days - 1


def window_start(day: date, frequency: str, last_digest: date | None, window_days: int) -> date:
    """The first listing date a digest for ``day`` covers by date: the day after the subscriber's last
    digest; for a brand-new subscriber one period (``day`` itself when daily, the week ending on ``day``
    when weekly); never further back than ``reach_days``. Papers stored late for earlier dates come on top
    (``digest.pipeline.digest_windows``)."""
    earliest = day - timedelta(days=reach_days(frequency, window_days) - 1)
    if last_digest is None:
        return max(earliest, day - timedelta(days=PERIOD_DAYS.get(frequency, 1) - 1))
    if last_digest >= day:
        return day
    return max(earliest, last_digest + timedelta(days=1))


def default_max_papers(frequency: str, weekly_max_papers: int) -> int:
    """Papers per digest when the subscriber did not choose: ``DEFAULT_MAX_PAPERS`` a day, more for a week
    (``DIGEST_WEEKLY_MAX_PAPERS``)."""
    return weekly_max_papers if frequency == "weekly" else DEFAULT_MAX_PAPERS


def max_papers_after(old_frequency: str, new_frequency: str, old_max: int, new_max: int | None,
                     weekly_max_papers: int) -> int:
    """Papers per digest after a change of cadence: ``new_max`` when the subscriber changed it; when they
    kept the old cadence's default, the new cadence's default (switching to weekly makes 10 a week 25);
    else what they had."""
    if new_max is not None and new_max != old_max:
        return new_max
    if old_frequency != new_frequency and old_max == default_max_papers(old_frequency, weekly_max_papers):
        return default_max_papers(new_frequency, weekly_max_papers)
    return old_max
