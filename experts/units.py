"""Unit conversion expert: physical quantities with pint, temperatures with their offsets.

Unit conversion is one of the discrete experts of Jurassic-X (Karpas et al., 2022,
"MRKL Systems", Sec. 2): a language model guesses conversion factors, a units
library knows them. The router extracts ``value``, ``from_unit`` and ``to_unit``;
pint (https://pint.readthedocs.io) converts, including the offset units °C and °F
(100 °F = 37.7778 °C, not 100 × 5/9).

Unit names are read the way people write them: "miles", "km", "F" and "C" (as
temperatures: in everyday questions "100 F in C" means degrees, not farad and
coulomb), "degrees Fahrenheit", "mph", "km/h", "square feet", "cubic meters",
"miles per hour", "fl oz", "lbs". Anything else pint knows works too.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from pathlib import Path
from typing import Any

import pint
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mrkl.errors import ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample

__all__ = ["UnitsExpert", "convert", "parse_unit", "parse_number"]

_MAX_UNIT_CHARS = 60
_MAX_QUESTION_CHARS = 200  # longer questions are left to the router (bounds the parser's regex time)
_UNIT_CHARS_RE = re.compile(r"^[A-Za-z0-9 _/*^.°µΩ()\-]+$")

#: What people write → what pint calls it (lower-cased keys; single letters F/C are temperatures).
_ALIASES: dict[str, str] = {
    "f": "degF", "°f": "degF", "º f": "degF", "deg f": "degF", "degf": "degF", "fahrenheit": "degF",
    "degree fahrenheit": "degF", "degrees fahrenheit": "degF", "degrees f": "degF", "degree f": "degF",
    "c": "degC", "°c": "degC", "deg c": "degC", "degc": "degC", "celsius": "degC", "centigrade": "degC",
    "degree celsius": "degC", "degrees celsius": "degC", "degrees c": "degC", "degree c": "degC",
    "degrees centigrade": "degC",
    "k": "kelvin", "degrees kelvin": "kelvin", "degree kelvin": "kelvin",
    "kph": "km/hour", "kmh": "km/hour", "km/h": "km/hour", "kmph": "km/hour", "kilometers per hour": "km/hour",
    "kilometres per hour": "km/hour", "miles per hour": "mile/hour", "mph": "mile/hour",
    "fl oz": "fluid_ounce", "fl. oz": "fluid_ounce", "fl. oz.": "fluid_ounce", "fluid ounce": "fluid_ounce",
    "fluid ounces": "fluid_ounce", "lbs": "pound", "lb": "pound", "pounds": "pound", "pound": "pound",
    "oz": "ounce", "ounces": "ounce", "stones": "stone", "st": "stone",
    "metric ton": "metric_ton", "metric tons": "metric_ton", "tonnes": "metric_ton", "tonne": "metric_ton",
    "nautical mile": "nautical_mile", "nautical miles": "nautical_mile", "nmi": "nautical_mile",
    "light year": "light_year", "light years": "light_year", "light-year": "light_year", "light-years": "light_year",
    "us gallon": "gallon", "us gallons": "gallon", "imperial gallon": "imperial_gallon",
    "imperial gallons": "imperial_gallon", "uk gallon": "imperial_gallon", "uk gallons": "imperial_gallon",
    "horse power": "horsepower", "hp": "horsepower", "sq ft": "square_foot", "sq. ft.": "square_foot",
    "sq m": "meter**2", "sq km": "kilometer**2", "sq mi": "mile**2", "cc": "cm**3",
}

_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "hundred": 100, "a hundred": 100, "one hundred": 100, "a thousand": 1000, "one thousand": 1000,
    "half a": 0.5, "half an": 0.5, "a quarter": 0.25, "a dozen": 12, "dozen": 12,
}


@functools.lru_cache(maxsize=1)
def _registry() -> pint.UnitRegistry:
    """The shared pint registry, built once.

    Parsing pint's definitions takes about 1.3 s on a 2-core machine; pint's own disk cache
    (``$MRKL_CACHE_DIR/pint``, default ``~/.cache/mrkl/pint``, mrkl's cache folder) brings
    later loads to ~0.15 s. Without a writable cache folder the registry is built uncached.
    """
    cache = str(Path(os.environ.get("MRKL_CACHE_DIR") or Path.home() / ".cache" / "mrkl").expanduser() / "pint")
    try:
        return pint.UnitRegistry(autoconvert_offset_to_baseunit=False, cache_folder=cache)
    except Exception:  # noqa: BLE001 - an unusable cache folder must not break unit conversion
        return pint.UnitRegistry(autoconvert_offset_to_baseunit=False)


@functools.lru_cache(maxsize=1)
def _known_names() -> list[str]:
    """Every unit name pint defines (iterating a registry yields them) plus the aliases."""
    return sorted(set(_registry()) | set(_ALIASES))


def parse_number(text: Any) -> float:
    """A number from ``text``: ``26.2``, ``"1,000"``, ``"-40"``, ``"1/2"``, ``"1e3"``, ``"a"``, ``"twelve"``.

    Raises:
        ValueError: not a finite number.
    """
    if isinstance(text, bool):
        raise ValueError("a number is needed, not true/false")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = " ".join(str(text).lower().split())
        if s in _NUMBER_WORDS:
            value = float(_NUMBER_WORDS[s])
        elif m := re.fullmatch(r"(-?\d+)\s*/\s*(\d+)", s):
            if int(m.group(2)) == 0:
                raise ValueError(f"{text!r}: division by zero")
            value = int(m.group(1)) / int(m.group(2))
        elif re.fullmatch(r"[-+]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][-+]?\d{1,3})?", s) and re.search(r"\d", s):
            value = float(s.replace(",", ""))
        else:
            raise ValueError(f"{text!r} is not a number")
    if not math.isfinite(value) or abs(value) > 1e300:
        raise ValueError(f"{text!r} is not a finite number of a sensible size")
    return value


def parse_unit(text: str) -> pint.Unit:
    """The pint unit for what a person wrote ("miles", "F", "degrees Celsius", "square feet", "km/h").

    Raises:
        ExpertError: empty, too long, odd characters, or a unit pint does not know
            (the message suggests close unit names).
    """
    raw = " ".join(str(text).split())
    if not raw:
        raise ExpertError("a unit is needed (for example 'km', 'miles', 'F', 'kg')")
    if len(raw) > _MAX_UNIT_CHARS or not _UNIT_CHARS_RE.match(raw):
        raise ExpertError(f"{raw[:40]!r} is not a unit name")
    ureg = _registry()
    low = raw.lower().rstrip(".")
    candidates = []
    if low in _ALIASES:
        candidates.append(_ALIASES[low])
    if low.startswith("degrees ") or low.startswith("degree "):
        candidates.append(_ALIASES.get(low.split(" ", 1)[1], low.split(" ", 1)[1]))
    text2 = re.sub(r"\bper\b", "/", raw, flags=re.IGNORECASE)
    text2 = re.sub(r"\b(?:square|sq\.?)\s+(\w+)", r"\1**2", text2, flags=re.IGNORECASE)
    text2 = re.sub(r"\b(?:cubic|cu\.?)\s+(\w+)", r"\1**3", text2, flags=re.IGNORECASE)
    text2 = re.sub(r"\s*/\s*", "/", text2).replace("^", "**")
    candidates += [raw, text2, text2.lower(), re.sub(r"(?<=\w) (?=\w)", "_", text2), re.sub(r"(?<=\w) (?=\w)", "_", text2.lower())]
    for cand in dict.fromkeys(candidates):
        try:
            unit = ureg.parse_units(cand)
        except Exception:  # noqa: BLE001 - pint raises many types for unknown or malformed units
            continue
        if isinstance(unit, pint.Unit):
            return unit
    close = difflib.get_close_matches(low, _known_names(), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ExpertError(f"unknown unit {raw!r}{hint}")


def _kind(unit: pint.Unit) -> str:
    """A readable name of a unit's dimensionality: 'length', 'mass', 'temperature', 'length / time' ..."""
    dim = str(unit.dimensionality).replace("[", "").replace("]", "")
    return dim or "dimensionless"


def _fmt(x: float) -> str:
    """6 significant digits, thousands separators, no exponent between 1e-4 and 1e15."""
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e15 or ax < 1e-4:
        return f"{x:.6g}"
    decimals = 6 - int(math.floor(math.log10(ax))) - 1
    rounded = round(x, decimals)
    if decimals <= 0 or rounded == int(rounded):
        return f"{int(rounded):,}"
    return f"{rounded:,.{decimals}f}".rstrip("0").rstrip(".")


#: pint symbols that read badly in an answer → what people write.
_DISPLAY = {"l": "L", "cp": "cup", "floz": "fl oz", "mi/h": "mph", "tbsp": "tbsp", "tsp": "tsp"}


def _symbol(unit: pint.Unit) -> str:
    text = f"{unit:~P}"
    return _DISPLAY.get(text, text) or str(unit)


def convert(value: Any, from_unit: str, to_unit: str) -> ExpertResult:
    """Convert ``value`` ``from_unit`` to ``to_unit`` with pint.

    Args:
        value: the magnitude (a number, or text such as ``"1,000"`` or ``"a"``).
        from_unit, to_unit: unit names as people write them (see :func:`parse_unit`).

    Returns:
        An :class:`ExpertResult`: ``value`` the converted magnitude (float), ``text``
        like ``"26.2 mi = 42.1648 km"``, ``data`` with ``exact`` (the full float),
        ``from``/``to`` (pint's unit names and symbols) and ``dimensionality``.
        Temperatures convert with their offsets (``°F``, ``°C``, ``K``).

    Raises:
        ExpertError: an unknown unit, a value that is not a number, units of different
            kinds ("cannot convert mi (length) to kg (mass)"), or an offset unit used in
            a compound unit.
    """
    try:
        magnitude = parse_number(value)
    except ValueError as exc:
        raise ExpertError(f"the value to convert must be a number: {exc}") from None
    src, dst = parse_unit(from_unit), parse_unit(to_unit)
    ureg = _registry()
    try:
        result = ureg.Quantity(magnitude, src).to(dst)
    except pint.DimensionalityError:
        raise ExpertError(
            f"cannot convert {_symbol(src)} ({_kind(src)}) to {_symbol(dst)} ({_kind(dst)}): they measure different things"
        ) from None
    except pint.OffsetUnitCalculusError:
        raise ExpertError(
            f"{_symbol(src)} to {_symbol(dst)}: temperatures with an offset (°C, °F) cannot be part of a compound unit"
        ) from None
    except (OverflowError, ZeroDivisionError, ValueError) as exc:
        raise ExpertError(f"could not convert {magnitude:g} {_symbol(src)} to {_symbol(dst)}: {exc}") from None
    out = float(result.magnitude)
    if not math.isfinite(out):
        raise ExpertError(f"{_fmt(magnitude)} {_symbol(src)} in {_symbol(dst)} is too large to represent")
    text = f"{_fmt(magnitude)} {_symbol(src)} = {_fmt(out)} {_symbol(dst)}"
    return ExpertResult(
        value=out,
        text=text,
        sources=["pint"],
        data={
            "exact": out,
            "value": magnitude,
            "from": {"name": str(src), "symbol": _symbol(src)},
            "to": {"name": str(dst), "symbol": _symbol(dst)},
            "dimensionality": _kind(src),
        },
    )


# --- the symbolic parser -----------------------------------------------------------

_NUM = r"(?P<value>-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?|-?\.\d+|\d+\s*/\s*\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|twelve|a hundred|a thousand|half an?|a quarter|a dozen)"
_UNIT = r"[a-z°µ][a-z°µ0-9 ./^*\-]*?"
_QUESTION_PATTERNS = [
    # how many km is 26.2 miles / how many ounces are in a pound / how many feet in a mile
    re.compile(rf"how (?:many|much) (?P<to>{_UNIT}) (?:is|are|make|makes|in|equals?|=|are in|is in|are there in|is there in|go into|fit in|fit into) {_NUM} ?(?P<from>{_UNIT})", re.I),
    # convert 100 F to C / 100 F in C / what is 5 feet in meters / how much is 3 cups in ml
    re.compile(rf"(?:(?:please )?convert|what(?:'s| is| are)|how (?:much|many|long|far|heavy|hot|cold) is|change|express)? ?{_NUM} ?(?P<from>{_UNIT}) (?:to|in|into|as|in terms of|expressed in) (?P<to>{_UNIT})", re.I),
    # 26.2 miles is how many km
    re.compile(rf"{_NUM} ?(?P<from>{_UNIT}) (?:is|are|equals?|makes?) how (?:many|much) (?P<to>{_UNIT})", re.I),
    # 100 F equals how many C -> covered above; 'what is 100 fahrenheit converted to celsius'
    re.compile(rf"(?:what(?:'s| is) )?{_NUM} ?(?P<from>{_UNIT}) converted (?:to|into) (?P<to>{_UNIT})", re.I),
]


class UnitsExpert(Expert):
    """Unit conversion with pint: lengths, masses, volumes, speeds, areas, energy, temperatures (with offsets).

    Input: ``Args`` (``value``, ``from_unit``, ``to_unit``). Output: :func:`convert`'s
    result. Errors: :class:`~mrkl.errors.ExpertError` for unknown or incompatible units.

    Source: unit conversion as a discrete MRKL expert (Karpas et al., 2022, Sec. 2);
    the conversions are pint's.
    """

    name = "units"
    description = (
        "Convert measurements between units: length, weight, volume, speed, area, energy and "
        "temperature (miles to km, pounds to kg, Fahrenheit to Celsius, cups to ml)."
    )

    class Args(BaseModel):
        """Arguments of the unit converter."""

        model_config = ConfigDict(extra="forbid")
        value: float = Field(..., description="The number to convert, e.g. 26.2.")
        from_unit: str = Field(..., min_length=1, max_length=_MAX_UNIT_CHARS, description="The unit it is in, e.g. 'miles', 'F', 'kg'.")
        to_unit: str = Field(..., min_length=1, max_length=_MAX_UNIT_CHARS, description="The unit wanted, e.g. 'km', 'C', 'lb'.")

        @field_validator("value", mode="before")
        @classmethod
        def _number(cls, v: Any) -> float:
            return parse_number(v)

    examples = [
        RoutingExample("How many km is 26.2 miles?", {"value": 26.2, "from_unit": "miles", "to_unit": "km"}),
        RoutingExample("What is 100 F in C?", {"value": 100, "from_unit": "F", "to_unit": "C"}),
        RoutingExample("Convert 180 cm to feet", {"value": 180, "from_unit": "cm", "to_unit": "feet"}),
        RoutingExample("How many pounds is 70 kg?", {"value": 70, "from_unit": "kg", "to_unit": "pounds"}),
        RoutingExample("How many ounces are in a pound?", {"value": 1, "from_unit": "pound", "to_unit": "ounces"}),
        RoutingExample("What is -40 degrees Celsius in Fahrenheit?", {"value": -40, "from_unit": "degrees Celsius", "to_unit": "Fahrenheit"}),
        RoutingExample("Convert 60 mph to km/h", {"value": 60, "from_unit": "mph", "to_unit": "km/h"}),
        RoutingExample("How many liters are in 3 gallons?", {"value": 3, "from_unit": "gallons", "to_unit": "liters"}),
        RoutingExample("How many square feet is 50 square meters?", {"value": 50, "from_unit": "square meters", "to_unit": "square feet"}),
        RoutingExample("What is 300 kelvin in Celsius?", {"value": 300, "from_unit": "kelvin", "to_unit": "Celsius"}),
    ]

    answer_template = "{{ text }}"

    def run(self, args: BaseModel) -> ExpertResult:
        """Convert with :func:`convert`.

        Raises:
            ExpertError: see :func:`convert`.
        """
        return convert(args.value, args.from_unit, args.to_unit)  # type: ignore[attr-defined]

    def symbolic_args(self, question: str) -> dict[str, Any] | None:
        """Arguments when the whole question is a plain conversion ("how many km is 26.2 miles",
        "100 F in C", "convert 60 mph to km/h") and both units are known to pint; else ``None``."""
        q = " ".join(question.split()).rstrip("?!. ")
        if len(q) > _MAX_QUESTION_CHARS:  # a conversion is short; long text would only cost regex time
            return None
        for pat in _QUESTION_PATTERNS:
            m = pat.fullmatch(q)
            if not m:
                continue
            try:
                value = parse_number(m.group("value"))
                src, dst = m.group("from").strip(), m.group("to").strip()
                parse_unit(src)
                parse_unit(dst)
                convert(value, src, dst)
            except (ValueError, ExpertError):
                continue
            return {"value": value, "from_unit": src, "to_unit": dst}
        return None
