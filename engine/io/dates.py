"""Acquisition dates of time-series inputs: from file names, GDAL metadata, band
descriptions or an explicit list, with one clear error for missing, unparsable or
duplicate dates.

Recognised in names and descriptions (first match wins, in this order):
- Sentinel-1 products: ``S1A_IW_GRDH_1SDV_20200102T054321_...`` (sensing start);
- Sentinel-2 products and tiles: ``S2B_MSIL2A_20200102T103421_...``,
  ``T32UNC_20200102T103421_B02``, ``..._20200102_0_L2A`` (sensing date);
- Landsat product ids: ``LC08_L1TP_003069_20180906_...`` (acquisition date);
- a compact datetime ``YYYYMMDDTHHMMSS``;
- ``YYYY-MM-DD``, ``YYYY_MM_DD`` or ``YYYY.MM.DD``;
- a bare ``YYYYMMDD`` not part of a longer number.
A generic name holding two different dates (e.g. a mosaic ``20200101_20200131``)
is ambiguous and gives no date: the user must list the dates.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence

from engine import contract
from engine.contract import ContractError, date_from_name, date_from_tags  # noqa: F401  (this module's interface too)
from engine.errors import EngineError


def parse_date(text: str | dt.date) -> dt.date:
    """One date given by a person: ISO ``YYYY-MM-DD`` (time allowed), ``YYYYMMDD`` or a product name."""
    try:
        return contract.parse_date(text)
    except ContractError as exc:
        raise EngineError(str(exc)) from None


def day_of_year(date: dt.date) -> int:
    """1 January = 1 (the convention of the models' date encodings)."""
    return date.timetuple().tm_yday


def check_dates(dates: Sequence[dt.date | None], labels: Sequence[str], what: str) -> list[dt.date]:
    """Every entry has a date and no date repeats; otherwise one error listing all problems.

    ``labels`` name each entry (file names or band numbers) so that the message
    points at what to fix.
    """
    missing = [label for label, date in zip(labels, dates) if date is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EngineError(
            f"No acquisition date could be read for {shown} of {what}: put the date in the file name "
            "(e.g. S2_20200615.tif or 2020-06-15.tif), in the ACQUISITIONDATE metadata or the band "
            "descriptions, or list the dates in the job's \"dates\"."
        )
    counts = Counter(dates)
    repeated = sorted(d for d, n in counts.items() if n > 1)
    if repeated:
        where = "; ".join(
            f"{d.isoformat()}: {', '.join(label for label, x in zip(labels, dates) if x == d)}" for d in repeated[:3]
        )
        raise EngineError(
            f"{what} has the same date more than once ({where}). Keep one acquisition per date "
            "(e.g. merge same-day tiles into one mosaic) or give distinct dates in the job's \"dates\"."
        )
    return list(dates)  # type: ignore[arg-type]


def explicit_dates(values: Iterable[str | dt.date], count: int, what: str) -> list[dt.date]:
    """A user's list of dates (the override): one per entry of ``what``, all distinct."""
    dates = [parse_date(v) for v in values]
    if len(dates) != count:
        raise EngineError(
            f"{len(dates)} date(s) were given for {what}, which has {count} acquisition(s): give one date each."
        )
    return check_dates(dates, [f"date {i + 1}" for i in range(count)], what)
