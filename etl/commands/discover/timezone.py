"""Whether naive timestamps are plant-local wall-clock time in a DST zone or UTC, from the data.

Plant-local times in a zone with daylight saving carry a signature: on the spring change the
skipped hour (02:00-03:00 in Europe) has no bookings, on the autumn change the repeated hour has
about twice its neighbours' share. UTC times show neither: the hour is as busy as the ones around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

DEFAULT_DST_ZONE = "Europe/Berlin"  # tried when the connector's zone has no DST
MIN_NEIGHBOURS = 3.0  # bookings per hour around the change needed to judge it


@dataclass
class Change:
    """One DST change of a zone: the local day and the hour skipped or repeated."""

    day: date
    hour: int  # local wall-clock hour that is skipped (spring) or repeated (autumn)
    spring: bool


@dataclass
class ZoneEvidence:
    """The verdict and the observations behind it."""

    verdict: str  # "local", "utc" or "unknown"
    zone: str
    observations: list[str]

    def line(self) -> str:
        """One sentence for the mapping's comments."""
        seen = "; ".join(self.observations) or "no DST change in the sampled range"
        if self.verdict == "local":
            return f"naive, plant-local in a DST zone ({seen})"
        if self.verdict == "utc":
            return f"looks like UTC ({seen})"
        return f"cannot tell UTC from plant-local ({seen})"


def changes(zone: ZoneInfo, first: date, last: date) -> list[Change]:
    """Every DST change of ``zone`` from ``first`` to ``last`` (local days)."""
    out = []
    day = first
    while day <= last:
        noon = datetime(day.year, day.month, day.day, 0, tzinfo=zone)
        after = noon + timedelta(days=1)
        before_offset, after_offset = noon.utcoffset(), after.utcoffset()
        if before_offset != after_offset and before_offset is not None and after_offset is not None:
            spring = after_offset > before_offset
            for hour in range(24):
                probe = datetime(day.year, day.month, day.day, hour, 30, tzinfo=zone)
                if probe.utcoffset() != before_offset:
                    out.append(Change(day, hour - 1, spring))
                    break
        day += timedelta(days=1)
    return out


def zone_to_test(connector_zone: ZoneInfo) -> ZoneInfo:
    """The connector's zone if it has DST, else the default DST zone."""
    year = datetime.now().year
    winter = datetime(year, 1, 15, tzinfo=connector_zone).utcoffset()
    summer = datetime(year, 7, 15, tzinfo=connector_zone).utcoffset()
    return connector_zone if winter != summer else ZoneInfo(DEFAULT_DST_ZONE)


def judge(naive: pd.Series, zone: ZoneInfo) -> ZoneEvidence:
    """The verdict for naive wall-clock stamps (they should include the days of the changes)."""
    stamps = pd.Series(pd.to_datetime(naive.dropna()))
    if stamps.empty:
        return ZoneEvidence("unknown", zone.key, [])
    found = changes(zone, stamps.min().date(), stamps.max().date())
    local = utc = 0
    notes = []
    days = stamps.dt.date
    for change in found:
        on_day = stamps[days == change.day]
        hours = on_day.dt.hour.value_counts()
        around = [hours.get(h, 0) for h in range(change.hour - 3, change.hour + 4)]
        here = hours.get(change.hour, 0)
        neighbours = (sum(around) - here) / 6
        if neighbours < MIN_NEIGHBOURS:
            continue
        span = f"{change.hour:02d}:00-{change.hour + 1:02d}:00"
        if change.spring:
            if here == 0:
                local += 1
                notes.append(f"the {change.day:%B} gap at {span} on {change.day} is empty")
            elif here >= 0.3 * neighbours:
                utc += 1
                notes.append(f"{span} on {change.day} (a skipped hour locally) has {here} rows")
        else:
            ratio = here / neighbours
            if ratio >= 1.6:
                local += 1
                notes.append(
                    f"{span} on {change.day} (repeated locally) has {ratio:.1f}x its share"
                )
            elif 0.5 <= ratio <= 1.4:
                utc += 1
                notes.append(f"{span} on {change.day} has {ratio:.1f}x its share, not twice")
    verdict = "local" if local > utc else "utc" if utc > local else "unknown"
    return ZoneEvidence(verdict, zone.key, notes)


def warning(evidence: ZoneEvidence, connector_zone: ZoneInfo) -> str | None:
    """A warning when the connector's timezone disagrees with the evidence."""
    has_dst = zone_to_test(connector_zone) is connector_zone
    if evidence.verdict == "local" and not has_dst:
        return (
            f"the connector's timezone is {connector_zone.key} but the data look plant-local in a "
            f"DST zone: set timezone (e.g. {evidence.zone}) in the connector"
        )
    if evidence.verdict == "utc" and has_dst:
        return (
            f"the connector's timezone is {connector_zone.key} but the data look like UTC: "
            "set 'timezone: UTC' in the connector unless the MES really writes local time"
        )
    return None
