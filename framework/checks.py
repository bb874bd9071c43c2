"""Range and choice checks of config values, written once so every message reads the same:
``adaptation.mode: must be one of per_video, online, got 'bogus'``."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from framework.errors import UserError


@dataclass(frozen=True)
class OneOf:
    choices: Sequence[Any]

    def problem(self, value: Any) -> Optional[str]:
        if value in self.choices:
            return None
        return f"must be one of {', '.join(str(c) for c in self.choices)}, got {value!r}"


@dataclass(frozen=True)
class EachOneOf:
    """A list (or tuple) whose every entry is one of ``choices``."""
    choices: Sequence[Any]

    def problem(self, value: Any) -> Optional[str]:
        wanted = ', '.join(str(c) for c in self.choices)
        if not isinstance(value, (list, tuple)):
            return f"must be a list of {wanted}, got {value!r}"
        for item in value:
            if item not in self.choices:
                return f"must each be one of {wanted}, got {item!r}"
        return None


@dataclass(frozen=True)
class Within:
    """``low <= value <= high`` (``<`` where open); either bound may be None. A bool is no number."""
    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False
    optional: bool = False  # None is allowed
    integer: bool = False  # a whole number (int or numpy integer), not a float
    # (numpy numbers are numbers.Real / numbers.Integral; strings and bools are not numbers)

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            return False
        v = float(value)
        return not math.isnan(v) and \
            (self.low is None or (v > self.low if self.open_low else v >= self.low)) and \
            (self.high is None or (v < self.high if self.open_high else v <= self.high))

    def wanted(self) -> str:
        """What a good value is, after ``must``: ``be at least 1``, ``lie in (0, 1]``, ``be an integer in [1, 8]``."""
        if self.low is None and self.high is None:
            bound = ""
        elif self.high is None:
            bound = f"> {self.low:g}" if self.open_low else f"at least {self.low:g}"
        elif self.low is None:
            bound = f"{'<' if self.open_high else '<='} {self.high:g}"
        else:
            bound = f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        if self.integer:
            return f"be an integer {bound}".rstrip()
        if not bound:
            return "be a number"
        return f"lie {bound}" if bound.startswith("in ") else f"be {bound}"

    def problem(self, value: Any) -> Optional[str]:
        if (value is None and self.optional) or self.ok(value):
            return None
        return f"must {self.wanted()}, got {value!r}"


@dataclass(frozen=True)
class Span:
    """A ``[low, high]`` pair of finite numbers with low <= high, both within ``lowest``..``highest``
    (``>`` where ``open_low``)."""
    lowest: Optional[float] = None
    highest: Optional[float] = None
    integer: bool = False
    open_low: bool = False

    def problem(self, value: Any) -> Optional[str]:
        pair = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
        kind = "integers" if self.integer else "numbers"
        number = Within(integer=self.integer)
        if pair is None or len(pair) != 2 or not all(number.ok(v) and math.isfinite(float(v)) for v in pair) or \
                float(pair[0]) > float(pair[1]):
            return f"must be [low, high] {kind} with low <= high, got {value if pair is None else pair!r}"
        bounds = Within(self.lowest, self.highest, open_low=self.open_low)
        if not all(bounds.ok(v) for v in pair):
            return f"must {bounds.wanted()}, got {pair!r}"
        return None


def at_least(low: float, optional: bool = False) -> Within:
    return Within(low=low, optional=optional)


def integer(low: Optional[int] = None, high: Optional[int] = None, optional: bool = False) -> Within:
    return Within(low=low, high=high, optional=optional, integer=True)


def positive(optional: bool = False) -> Within:
    return Within(low=0, open_low=True, optional=optional)


def fraction(open_low: bool = False, open_high: bool = False) -> Within:
    return Within(0, 1, open_low, open_high)


def check(section: Any, prefix: str, **rules: Any) -> None:
    """Check attributes of ``section`` (a dataclass or any object; or the items of a dict) against
    rules; the first offending one is a UserError naming ``prefix.key``."""
    for key, rule in rules.items():
        problem = rule.problem(section[key] if isinstance(section, Mapping) else getattr(section, key))
        if problem:
            raise UserError(f"{prefix}.{key}: {problem}")
