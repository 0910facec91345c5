"""The one dict-to-dataclass converter: types, field checks and each front end's wording."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from engine.convert import Wording, from_dict
from engine.errors import EngineError


@dataclass
class Inner:
    size: int
    name: str = ""


@dataclass
class Outer:
    inner: Inner
    files: str | list[str] = "a.tif"
    bounds: tuple[float, float] | None = None
    mode: str = field(default="fast", metadata={"choices": ("fast", "exact")})
    rate: float = field(default=1.0, metadata={"positive": True})
    tags: dict[str, int] = field(default_factory=dict)
    flag: bool = False


def test_types_unions_and_nesting():
    out = from_dict(
        Outer, {"inner": {"size": "3"}, "files": ["x", "y"], "bounds": [1, 2], "tags": {"a": 2.0}, "flag": "yes"}
    )
    assert out == Outer(Inner(3), ["x", "y"], (1.0, 2.0), tags={"a": 2}, flag=True)
    assert from_dict(Outer, {"inner": {"size": 1}, "files": "one.tif"}).files == "one.tif"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"inner": {"size": 2.5}}, r"Config key config.inner.size must be a whole number, got 2.5"),
        ({"inner": {"size": 1}, "mode": "slow"}, "config.mode must be one of fast, exact, got 'slow'"),
        ({"inner": {"size": 1}, "rate": 0}, "config.rate must be positive"),
        ({"inner": {"size": 1}, "bounds": [1]}, "config.bounds must be a list of 2 values"),
        ({"inner": {"size": 1}, "flag": 2}, "config.flag must be true or false"),
        ({"inner": {"size": 1, "nmae": "x"}}, r"Unknown config key 'nmae' in config.inner. Did you mean 'name'\?"),
        ({}, "Missing required config key config.inner"),
        ({"inner": [1]}, "config.inner must be a mapping"),
    ],
)
def test_each_mistake_is_named(data, message):
    with pytest.raises(EngineError, match=message):
        from_dict(Outer, data)


def test_a_front_end_names_keys_in_its_own_words():
    words = Wording(
        label="Setting {key!r} of {where}",
        unknown="{where}: no setting {keys}",
        missing="{where} needs {keys}",
        not_mapping="{where}: not an object",
    )
    with pytest.raises(EngineError, match="Setting 'rate' of the form must be positive"):
        from_dict(Outer, {"inner": {"size": 1}, "rate": -1}, "the form", words)
    with pytest.raises(EngineError, match="the form: no setting bogus, other"):
        from_dict(Outer, {"inner": {"size": 1}, "other": 1, "bogus": 2}, "the form", words)
    with pytest.raises(EngineError, match="the form needs 'inner'"):
        from_dict(Outer, {}, "the form", words)


def test_values_the_caller_gives_are_not_read():
    assert from_dict(Inner, {"size": 1}, name="given").name == "given"
    with pytest.raises(EngineError, match="Unknown config key 'name'"):
        from_dict(Inner, {"size": 1, "name": "x"}, name="given")
