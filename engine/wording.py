"""Small helpers for messages a person reads: counts with the right noun form, articles, ranges."""

from __future__ import annotations


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``n`` and the noun in the form that count takes: "1 polygon", "3 polygons", "2 classes"."""
    if n == 1:
        return f"{n} {singular}"
    if plural_form is None:
        plural_form = singular + ("es" if singular.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{n} {plural_form}"


def article(word: str) -> str:
    """``word`` with "a" or "an" by its first letter ("an auto probe", "a linear probe")."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def span(values: list[int]) -> str:
    """The range of ``values`` written once when they are all equal: "5", else "3-5"."""
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}-{high}"
