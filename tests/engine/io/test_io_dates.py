"""Acquisition dates from names, metadata and explicit lists."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.io.dates import check_dates, date_from_name, date_from_tags, day_of_year, explicit_dates, parse_date


@pytest.mark.parametrize(
    "name, expected",
    [
        ("S2B_MSIL2A_20200102T103421_N0213_R108_T32UNC_20200102T111023.tif", dt.date(2020, 1, 2)),
        ("S1A_IW_GRDH_1SDV_20190315T054321_20190315T054346_026364_02F2C1_ABCD.tif", dt.date(2019, 3, 15)),
        ("T33UUU_20170216T100109_B04.jp2", dt.date(2017, 2, 16)),
        ("LC08_L1TP_003069_20180906_20180912_01_T1.tif", dt.date(2018, 9, 6)),
        ("LC08_003069_20180906_clip.tif", dt.date(2018, 9, 6)),
        ("S2A_33UUU_20210703_0_L2A.tif", dt.date(2021, 7, 3)),
        ("field_2020-06-15.tif", dt.date(2020, 6, 15)),
        ("field_2020_06_15_b.tif", dt.date(2020, 6, 15)),
        ("s2_20200615.tif", dt.date(2020, 6, 15)),
        ("20200615", dt.date(2020, 6, 15)),
        ("2020-06-15 B8A", dt.date(2020, 6, 15)),
    ],
)
def test_dates_in_names(name, expected):
    assert date_from_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "S1_2018_VV_VH_clip.tif",  # a year only
        "mosaic_20200101_20200131.tif",  # two different dates: ambiguous
        "orbit_120200615.tif",  # part of a longer number
        "scene_20210230.tif",  # no such day
        "band_B02.tif",
    ],
)
def test_names_without_a_usable_date(name):
    assert date_from_name(name) is None


def test_dates_in_gdal_metadata():
    assert date_from_tags({"ACQUISITIONDATE": "2020-06-15T10:20:30Z"}) == dt.date(2020, 6, 15)
    assert date_from_tags({"TIFFTAG_DATETIME": "2019:03:15 10:00:00"}) == dt.date(2019, 3, 15)
    # ACQUISITIONDATE wins over TIFFTAG_DATETIME (often the file's creation time).
    assert date_from_tags({"TIFFTAG_DATETIME": "2024:01:01 00:00:00", "acquisitiondate": "20200615"}) == dt.date(
        2020, 6, 15
    )
    assert date_from_tags({"AREA_OR_POINT": "Area"}) is None


def test_day_of_year_is_one_based():
    assert day_of_year(dt.date(2021, 1, 1)) == 1
    assert day_of_year(dt.date(2020, 12, 31)) == 366


def test_duplicates_and_missing_dates_are_clear_errors():
    with pytest.raises(EngineError, match="same date more than once.*2015-12-08: a.tif, b.tif"):
        check_dates([dt.date(2015, 12, 8), dt.date(2015, 12, 8)], ["a.tif", "b.tif"], "modality 's2'")
    with pytest.raises(EngineError, match="No acquisition date could be read for x.tif"):
        check_dates([dt.date(2015, 12, 8), None], ["a.tif", "x.tif"], "modality 's2'")


def test_explicit_dates_override_and_are_checked():
    assert explicit_dates(["2020-06-15", "20200701"], 2, "s2") == [dt.date(2020, 6, 15), dt.date(2020, 7, 1)]
    with pytest.raises(EngineError, match="2 date\\(s\\) were given for s2, which has 3"):
        explicit_dates(["2020-06-15", "2020-07-01"], 3, "s2")
    with pytest.raises(EngineError, match="'June' is not a date"):
        parse_date("June")


_TEMPLATES = [
    "{y:04d}{m:02d}{d:02d}",
    "{y:04d}-{m:02d}-{d:02d}",
    "{y:04d}_{m:02d}_{d:02d}",
    "{y:04d}{m:02d}{d:02d}T101112",
]


@settings(max_examples=200, deadline=None)
@given(
    date=st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(2099, 12, 31)),
    template=st.sampled_from(_TEMPLATES),
    prefix=st.text(alphabet="abcxyzS_-. ", max_size=8),
    suffix=st.text(alphabet="abcxyzVH_-. ", max_size=8),
)
def test_any_date_written_in_a_name_reads_back(date, template, prefix, suffix):
    text = prefix + template.format(y=date.year, m=date.month, d=date.day) + suffix + ".tif"
    assert date_from_name(text) == date
    assert parse_date(template.format(y=date.year, m=date.month, d=date.day)) == date


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcT_-.", max_size=30))
def test_parser_never_crashes_and_returns_real_dates(text):
    result = date_from_name(text)
    assert result is None or (1970 <= result.year <= 2099 and result.isoformat()[:4] in text.replace("-", ""))
