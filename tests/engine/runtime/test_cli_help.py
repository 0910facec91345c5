"""--help reads as text for a user: no reStructuredText markup, no engine module paths, an example job."""

from __future__ import annotations

import re

import pytest

from engine.io.job import EXAMPLE_JOB, parse_job
from engine.runtime.cli import build_parser, plain

JOB_COMMANDS = ("classify", "embed", "normalization-stats", "fit-probe", "apply-probe", "change", "learn-area")


def helps() -> dict[str, str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices  # the subcommands' parsers
    return {name: sub.format_help() for name, sub in commands.items()}


def test_help_has_no_markup_and_no_module_paths():
    texts = helps()
    assert len(texts) > 15
    for name, text in texts.items():
        assert "``" not in text, name
        assert not re.search(r"::\n", text), name
        found = re.findall(r"\bengine[./][a-z_]\w*", text)
        assert not found, (name, found)


def test_commands_that_take_a_job_show_an_example_of_one():
    texts = helps()
    for name in JOB_COMMANDS:
        assert "Example job" in texts[name] and '"anysat-tiny"' in texts[name], name
    assert "Example job" not in texts["stats"]


def test_the_example_job_is_a_valid_job(tmp_path):
    job = parse_job(EXAMPLE_JOB, tmp_path)
    assert set(job.modalities) == {"s2", "s1_asc"}
    assert job.outputs.classes == str(tmp_path / "classes.tif")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Writes ``output`` for ``minutes``.", "Writes output for --minutes."),
        ("Buffered (engine.validation). Over ranks (engine/mapping/ranks.py); done.", "Buffered. Over ranks; done."),
        ("Job::\n\n        {}\n    more", "Job:\n\n    {}\nmore"),  # a docstring's indentation goes
    ],
)
def test_plain_rendering(text, expected):
    from dataclasses import dataclass, field

    @dataclass
    class Params:
        output: str = field(metadata={"positional": True})
        minutes: float = 1.0

    assert plain(text, Params) == expected
