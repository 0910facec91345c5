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
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from engine.errors import EngineError

# Years outside this range are much more likely to be another number (an orbit, a
# tile id) than an Earth-observation acquisition date.
MIN_YEAR, MAX_YEAR = 1970, 2099

_Y = r"(?P<y>(?:19|20)\d\d)"
_M = r"(?P<m>0[1-9]|1[0-2])"
_D = r"(?P<d>0[1-9]|[12]\d|3[01])"

# Product names whose FIRST date is the acquisition date (later ones are processing dates).
_PRODUCT = re.compile(
    r"(?:^|[^A-Za-z0-9])(?:S1[ABCD]_\w*?|S2[ABCD]_MSI\w*?|L[COTEM]0\d_\w*?|T\d\d[A-Z]{3}_)"
    + _Y + _M + _D,
    re.IGNORECASE,
)
_COMPACT_DATETIME = re.compile(r"(?<!\d)" + _Y + _M + _D + r"T\d{6}(?!\d)")
_SEPARATED = re.compile(r"(?<!\d)" + _Y + r"(?P<sep>[-_.])" + _M + r"(?P=sep)" + _D + r"(?!\d)")
_COMPACT = re.compile(r"(?<!\d)" + _Y + _M + _D + r"(?!\d)")
# GDAL/TIFF metadata: "2020:01:02 10:34:21" (TIFFTAG_DATETIME) or ISO 8601.
_METADATA = re.compile(_Y + r"[-:/]?" + _M + r"[-:/]?" + _D)

# Metadata keys tried in this order (dataset tags, then band tags).
DATE_TAGS = (
    "ACQUISITIONDATE", "ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "SENSING_DATE",
    "DATATAKE_1_DATATAKE_SENSING_START", "PRODUCT_START_TIME", "DATE", "TIFFTAG_DATETIME",
)


def _make(match: re.Match) -> dt.date | None:
    try:
        date = dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
    except ValueError:  # e.g. 2021-02-30
        return None
    return date if MIN_YEAR <= date.year <= MAX_YEAR else None


def date_from_name(name: str) -> dt.date | None:
    """The acquisition date written in a file name or band description, or None."""
    for pattern in (_PRODUCT, _COMPACT_DATETIME):
        for match in pattern.finditer(name):
            date = _make(match)
            if date is not None:
                return date
    found = {d for p in (_SEPARATED, _COMPACT) for m in p.finditer(name) if (d := _make(m))}
    return found.pop() if len(found) == 1 else None


def parse_date(text: str | dt.date) -> dt.date:
    """One date given by a person: ISO ``YYYY-MM-DD`` (time allowed), ``YYYYMMDD`` or a product name."""
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    value = str(text).strip()
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    date = date_from_name(value)
    if date is None:
        raise EngineError(f"'{text}' is not a date: write it as YYYY-MM-DD (e.g. 2020-06-15).")
    return date


def date_from_tags(tags: dict[str, str]) -> dt.date | None:
    """The acquisition date in GDAL metadata (ACQUISITIONDATE, TIFFTAG_DATETIME, ...), or None."""
    upper = {k.upper(): v for k, v in tags.items()}
    for key in DATE_TAGS:
        if key in upper and (match := _METADATA.search(str(upper[key]))):
            if (date := _make(match)) is not None:
                return date
    return None


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
            f"{d.isoformat()}: {', '.join(l for l, x in zip(labels, dates) if x == d)}" for d in repeated[:3]
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
