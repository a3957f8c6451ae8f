"""Dates expert: date arithmetic and calendar questions, exactly.

A calendar is one of Jurassic-X's discrete experts (Karpas et al., 2022, "MRKL
Systems", Sec. 2): a small language model cannot count 90 days across month ends,
a calendar can. The router extracts an ``operation`` and its dates; this module
computes with the standard library's proleptic Gregorian calendar, python-dateutil
(parsing written dates, ``relativedelta`` for months and years) and numpy's
business-day functions (Monday to Friday, no holidays).

Operations:

* ``add`` / ``subtract``: a date ± ``amount`` days, weeks, months, years or business
  days ("what weekday is 90 days after 3 March 2026" → Monday, 1 June 2026). Adding
  months keeps the day of the month where it exists, else the month's last day
  (31 January + 1 month = 28 February).
* ``between``: the time from ``date`` to ``end_date`` in days (or weeks, months,
  years, business days); negative when the end comes first.
* ``weekday``: the day of the week of a date.
* ``info``: calendar facts of a date, or of a year given alone ("is 2028 a leap year"):
  weekday, ISO week, day of the year, days in its month, leap year.

Dates may be written "3 March 2026", "March 3rd, 2026", "2026-03-03", "3/4/2026"
(month first, US style), "today", "tomorrow", "yesterday", or a fixed-date holiday
("Christmas 2026", "New Year's Day", "Halloween"; without a year, the next one
from today).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable, Literal

import numpy as np
from dateutil import parser as date_parser
from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mrkl.errors import ExpertError
from mrkl.expert import Expert, ExpertResult, RoutingExample

__all__ = ["DatesExpert", "parse_date", "compute"]

_MAX_AMOUNT = 3_660_000  # about 10,000 years of days
_MAX_QUESTION_CHARS = 200  # longer questions are left to the router (bounds the parser's regex time)
Unit = Literal["days", "weeks", "months", "years", "business days"]
Operation = Literal["add", "subtract", "between", "weekday", "info"]

#: Fixed-date holidays: name → (month, day).
_HOLIDAYS: dict[str, tuple[int, int]] = {
    "christmas": (12, 25), "christmas day": (12, 25), "xmas": (12, 25), "christmas eve": (12, 24),
    "boxing day": (12, 26), "new year's eve": (12, 31), "new years eve": (12, 31), "new year's day": (1, 1),
    "new years day": (1, 1), "new year": (1, 1), "new year's": (1, 1), "halloween": (10, 31),
    "valentine's day": (2, 14), "valentines day": (2, 14), "st patrick's day": (3, 17),
    "independence day": (7, 4), "the fourth of july": (7, 4), "bastille day": (7, 14),
}
_RELATIVE = {"today": 0, "now": 0, "tomorrow": 1, "yesterday": -1, "the day after tomorrow": 2, "the day before yesterday": -2}
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90, "a hundred": 100, "one hundred": 100,
}


def _fmt(d: dt.date) -> str:
    """'Monday, 1 June 2026'."""
    return f"{d.strftime('%A')}, {d.day} {d.strftime('%B')} {d.year}"


def parse_date(text: Any, today: dt.date) -> dt.date:
    """A calendar date from what a person wrote.

    Args:
        text: "3 March 2026", "March 3rd, 2026", "2026-03-03", "3/4/2026" (month first),
            "March 2026" (the 1st), "25 Dec" (this year), "today", "tomorrow",
            "yesterday", or a fixed-date holiday ("Christmas 2026"; without a year the
            next one on or after ``today``).
        today: the date "today" means.

    Returns:
        A :class:`datetime.date`.

    Raises:
        ExpertError: the text is not a date this parser reads (the message shows accepted forms).
    """
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    raw = " ".join(str(text).split()).strip(" ,.?!")
    low = raw.lower()
    low = re.sub(r"^(?:on |the date )", "", low)
    if not low:
        raise ExpertError("a date is needed (for example '3 March 2026' or '2026-03-03')")
    if len(low) > 60:
        raise ExpertError(f"{raw[:40]!r}... is too long to be a date")
    if low in _RELATIVE:
        return today + dt.timedelta(days=_RELATIVE[low])
    m = re.fullmatch(r"(?:this |next )?([a-z' ]+?)(?:,? (\d{1,4}))?", low)
    if m and m.group(1).strip() in _HOLIDAYS:
        month, day = _HOLIDAYS[m.group(1).strip()]
        if m.group(2):
            return _safe_date(int(m.group(2)), month, day, raw)
        this_year = dt.date(today.year, month, day)
        return this_year if this_year >= today else _safe_date(today.year + 1, month, day, raw)
    if not re.search(r"\d", low):
        raise ExpertError(
            f"could not read the date {raw!r}; write it like '3 March 2026', '2026-03-03', 'today' or 'Christmas 2026'"
        )
    if re.fullmatch(r"\d{1,4}", low):
        raise ExpertError(f"{raw!r} is a year or a number, not a date; write a day, month and year")
    try:
        parsed = date_parser.parse(raw, default=dt.datetime(today.year, 1, 1), dayfirst=False, yearfirst=False)
    except (ValueError, OverflowError) as exc:
        raise ExpertError(
            f"could not read the date {raw!r} ({exc}); write it like '3 March 2026' or '2026-03-03'"
        ) from None
    return parsed.date()


def _safe_date(year: int, month: int, day: int, shown: str) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError as exc:
        raise ExpertError(f"{shown!r} is not a valid date: {exc}") from None


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - dt.date(year, month, 1)).days


def _shift(start: dt.date, amount: int, unit: str) -> dt.date:
    try:
        if unit == "days":
            return start + dt.timedelta(days=amount)
        if unit == "weeks":
            return start + dt.timedelta(weeks=amount)
        if unit == "months":
            return start + relativedelta(months=amount)
        if unit == "years":
            return start + relativedelta(years=amount)
        # business days: numpy rolls a weekend start forward (adding) or back (subtracting) first
        roll = "forward" if amount >= 0 else "backward"
        return np.busday_offset(np.datetime64(start, "D"), amount, roll=roll).astype(dt.date)
    except (OverflowError, ValueError) as exc:
        raise ExpertError(f"the result is outside the calendar (years 1 to 9999): {exc}") from None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if abs(n) == 1 else 's'}"


def _between(start: dt.date, end: dt.date, unit: str) -> tuple[Any, str]:
    days = (end - start).days
    span = f"from {_fmt(start)} to {_fmt(end)}"
    if unit == "days":
        return days, f"There are {_plural(days, 'day')} {span}."
    if unit == "weeks":
        weeks, rest = divmod(abs(days), 7)
        sign = -1 if days < 0 else 1
        extra = f" and {_plural(rest, 'day')}" if rest else ""
        value = round(sign * abs(days) / 7, 6)
        return value, f"There are {_plural(sign * weeks, 'week')}{extra} ({_plural(days, 'day')}) {span}."
    if unit == "business days":
        n = int(np.busday_count(np.datetime64(start, "D"), np.datetime64(end, "D")))
        return n, f"There are {_plural(n, 'business day')} (Monday to Friday, end date not counted) {span}."
    rd = relativedelta(end, start)
    if unit == "months":
        months = rd.years * 12 + rd.months
        extra = f" and {_plural(rd.days, 'day')}" if rd.days else ""
        return months, f"There are {_plural(months, 'whole month')}{extra} {span}."
    extra = []
    if rd.months:
        extra.append(_plural(rd.months, "month"))
    if rd.days:
        extra.append(_plural(rd.days, "day"))
    tail = f" and {', '.join(extra)}" if extra else ""
    return rd.years, f"There are {_plural(rd.years, 'whole year')}{tail} {span}."


def _tense(d: dt.date, today: dt.date) -> str:
    return "was" if d < today else ("is" if d == today else "will be")


def compute(
    operation: str,
    date: Any,
    *,
    end_date: Any = None,
    amount: int | None = None,
    unit: str = "days",
    today: dt.date | None = None,
) -> ExpertResult:
    """Compute one date operation (see the module docstring).

    Args:
        operation: ``"add"``, ``"subtract"``, ``"between"``, ``"weekday"`` or ``"info"``.
        date: the (start) date, as text or a :class:`datetime.date`; for ``info`` also a year alone.
        end_date: the end date of ``between``.
        amount: how many ``unit`` to add or subtract (an integer; negative reverses).
        unit: ``"days"``, ``"weeks"``, ``"months"``, ``"years"`` or ``"business days"``.
        today: what "today" means (default: the local date now).

    Returns:
        An :class:`ExpertResult`: ``value`` an ISO date string (add, subtract), a number
        (between: days, weeks as a decimal, whole months or years, business days), the
        weekday name (weekday) or a dict of facts (info); ``text`` a sentence such as
        ``"90 days after Tuesday, 3 March 2026 is Monday, 1 June 2026."``; ``data`` the
        ISO dates involved.

    Raises:
        ExpertError: a date that cannot be read, a missing ``amount``/``end_date``, a
            result outside years 1–9999, an unknown operation or unit.
    """
    today = today or dt.date.today()
    if unit not in ("days", "weeks", "months", "years", "business days"):
        raise ExpertError(f"unknown unit {unit!r}; use days, weeks, months, years or business days")
    if operation == "info" and re.fullmatch(r"\s*\d{1,4}\s*", str(date)):
        year = int(str(date))
        if not 1 <= year <= 9999:
            raise ExpertError(f"year {year} is outside the calendar (years 1 to 9999)")
        leap = _is_leap(year)
        first = dt.date(year, 1, 1)
        text = (
            f"{year} {'is' if leap else 'is not'} a leap year: it has {366 if leap else 365} days "
            f"and starts on a {first.strftime('%A')}."
        )
        value = {"year": year, "leap_year": leap, "days": 366 if leap else 365, "first_weekday": first.strftime("%A")}
        return ExpertResult(value=value, text=text, sources=["calendar"], data=value)

    start = parse_date(date, today)
    data: dict[str, Any] = {"date": start.isoformat()}
    if operation in ("add", "subtract"):
        if amount is None:
            raise ExpertError(f"'{operation}' needs an amount (how many {unit})")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ExpertError(f"the amount must be a whole number, got {amount!r}")
        if abs(amount) > _MAX_AMOUNT:
            raise ExpertError(f"the amount {amount:,} is too large (the limit is {_MAX_AMOUNT:,})")
        signed = amount if operation == "add" else -amount
        result = _shift(start, signed, unit)
        word = "after" if signed >= 0 else "before"
        label = unit if abs(amount) != 1 else unit[:-1]
        text = f"{abs(signed):,} {label} {word} {_fmt(start)} {_tense(result, today)} {_fmt(result)}."
        data.update(result=result.isoformat(), weekday=result.strftime("%A"))
        return ExpertResult(value=result.isoformat(), text=text, sources=["calendar"], data=data)
    if operation == "between":
        if end_date is None:
            raise ExpertError("'between' needs an end date")
        end = parse_date(end_date, today)
        value, text = _between(start, end, unit)
        data.update(end_date=end.isoformat(), days=(end - start).days)
        return ExpertResult(value=value, text=text, sources=["calendar"], data=data)
    if operation == "weekday":
        name = start.strftime("%A")
        data["weekday"] = name
        return ExpertResult(
            value=name, text=f"{start.day} {start.strftime('%B')} {start.year} {_tense(start, today)} a {name}.",
            sources=["calendar"], data=data,
        )
    if operation == "info":
        iso_year, iso_week, _ = start.isocalendar()
        leap = _is_leap(start.year)
        n_days = 366 if leap else 365
        doy = start.timetuple().tm_yday
        month_days = _days_in_month(start.year, start.month)
        value = {
            "date": start.isoformat(), "weekday": start.strftime("%A"), "iso_week": iso_week, "iso_year": iso_year,
            "day_of_year": doy, "days_in_month": month_days, "leap_year": leap,
        }
        text = (
            f"{_fmt(start)}: ISO week {iso_week} of {iso_year}, day {doy} of {n_days}; "
            f"{start.strftime('%B')} {start.year} has {month_days} days; "
            f"{start.year} {'is' if leap else 'is not'} a leap year."
        )
        return ExpertResult(value=value, text=text, sources=["calendar"], data=value)
    raise ExpertError(f"unknown operation {operation!r}; use add, subtract, between, weekday or info")


# --- the symbolic parser ---------------------------------------------------------------

_N = r"(?P<amount>\d[\d,]*|" + "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True)) + ")"
_U = r"(?P<unit>business days?|working days?|weekdays|days?|weeks?|months?|years?|fortnights?)"
_D = r"(?P<date>[\w ,'/.-]+?)"
_E = r"(?P<end>[\w ,'/.-]+?)"


def _unit(word: str) -> tuple[str, int]:
    w = word.lower()
    if w.startswith(("business", "working")) or w == "weekdays":
        return "business days", 1
    if w.startswith("fortnight"):
        return "weeks", 2
    base = w if w.endswith("s") else w + "s"
    return base, 1


_PATTERNS: list[tuple[re.Pattern[str], Callable[[dict[str, str]], dict[str, Any]]]] = []


def _pattern(regex: str) -> Callable[[Callable[[dict[str, str]], dict[str, Any]]], Any]:
    def register(fn: Callable[[dict[str, str]], dict[str, Any]]) -> Any:
        _PATTERNS.append((re.compile(regex, re.IGNORECASE), fn))
        return fn

    return register


def _shift_args(g: dict[str, str]) -> dict[str, Any]:
    unit, mult = _unit(g["unit"])
    amount = _NUMBER_WORDS.get(g["amount"].lower()) or int(g["amount"].replace(",", ""))
    op = "subtract" if g["dir"].lower() in ("before", "prior to", "earlier than") else "add"
    return {"operation": op, "date": g["date"], "amount": amount * mult, "unit": unit}


_DIR = r"(?P<dir>after|from|since|before|prior to|later than|earlier than)"
_pattern(
    rf"(?:what|which) (?:day(?: of the week)?|weekday|date|day and date) (?:is|was|will it be|will be|would be|falls?|comes?) {_N} {_U} {_DIR} {_D}"
)(_shift_args)
_pattern(rf"(?:what(?:'s| is| was| will be| would be) )?(?:the date )?{_N} {_U} {_DIR} {_D}")(_shift_args)
_pattern(rf"what (?:will|would) the (?:date|day) be {_N} {_U} {_DIR} {_D}")(_shift_args)
_pattern(rf"(?:what is |what's )?{_D} (?P<sign>plus|\+|minus|-) {_N} {_U}")(
    lambda g: {**_shift_args({**g, "dir": "before" if g["sign"].lower() in ("minus", "-") else "after"})}
)


@_pattern(rf"(?:how many|number of) {_U} (?:are there |are |is it |is |do i have |left |remain )?(?:between|from) {_D} (?:and|to|until|till) {_E}")
def _between_args(g: dict[str, str]) -> dict[str, Any]:
    unit, mult = _unit(g["unit"])
    if mult != 1:
        unit = "weeks"
    return {"operation": "between", "date": g["date"], "end_date": g["end"], "unit": unit}


_pattern(rf"(?:the )?{_U} between {_D} and {_E}")(_between_args)


@_pattern(rf"how many {_U} (?:are there |are |is it |is |do i have |left |remain )?(?:until|till|to|before) {_E}")
def _until_args(g: dict[str, str]) -> dict[str, Any]:
    return _between_args({**g, "date": "today"})


@_pattern(rf"how many {_U} (?:ago was|have passed since|has it been since|since) {_D}")
def _since_args(g: dict[str, str]) -> dict[str, Any]:
    return _between_args({**g, "end": "today"})


@_pattern(rf"(?:what|which) (?:day of the week|weekday|day) (?:is|was|will be|falls on|is it on|was it on|will it be on) {_D}")
def _weekday_args(g: dict[str, str]) -> dict[str, Any]:
    return {"operation": "weekday", "date": g["date"]}


_pattern(rf"(?:on )?what (?:day of the week|weekday) does {_D} fall(?: on)?")(_weekday_args)
_pattern(rf"(?:is|was|will) (?P<date>\d{{1,4}}) (?:be )?a leap year")(lambda g: {"operation": "info", "date": g["date"]})
_pattern(rf"(?:what|which) (?:iso )?week(?: number)? (?:is|was|will be) {_D}")(lambda g: {"operation": "info", "date": g["date"]})
_pattern(rf"how many days (?:are there |are |does )?in {_D}(?: have)?")(lambda g: {"operation": "info", "date": g["date"]})


class DatesExpert(Expert):
    """Date arithmetic and calendar questions (see the module docstring for the operations).

    Args:
        today: what "today" means (default: the local date when each question runs);
            fixed in tests so that relative questions have known answers.

    Source: a calendar as a discrete MRKL expert (Karpas et al., 2022, Sec. 2); the
    calendar is the proleptic Gregorian one of Python's ``datetime`` and dateutil's
    ``relativedelta``.
    """

    name = "dates"
    description = (
        "Calendar and date arithmetic: the weekday of a date, the date N days/weeks/months "
        "after or before a date, the number of days between two dates, leap years, week numbers."
    )

    class Args(BaseModel):
        """Arguments of the dates expert."""

        model_config = ConfigDict(extra="forbid")
        operation: Operation = Field(
            ...,
            description="add or subtract an amount of time, count the time between two dates, "
            "give the weekday of a date, or info (week number, leap year, days in the month).",
        )
        date: str = Field(..., min_length=1, max_length=60, description="The (start) date, e.g. '3 March 2026', 'today', or a year for info.")
        end_date: str | None = Field(None, max_length=60, description="The end date, for between.")
        amount: int | None = Field(None, ge=-_MAX_AMOUNT, le=_MAX_AMOUNT, description="How many units to add or subtract.")
        unit: Unit = Field("days", description="days, weeks, months, years or business days.")

        @field_validator("date", "end_date", mode="before")
        @classmethod
        def _text(cls, v: Any) -> Any:
            return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

        @field_validator("unit", mode="before")
        @classmethod
        def _unit_word(cls, v: Any) -> Any:
            return _unit(v)[0] if isinstance(v, str) and v.strip() else v

    examples = [
        RoutingExample(
            "What weekday is 90 days after 3 March 2026?",
            {"operation": "add", "date": "3 March 2026", "amount": 90, "unit": "days"},
        ),
        RoutingExample(
            "How many days are there between 1 Jan 2026 and 25 Dec 2026?",
            {"operation": "between", "date": "1 Jan 2026", "end_date": "25 Dec 2026", "unit": "days"},
        ),
        RoutingExample("What day of the week was 20 July 1969?", {"operation": "weekday", "date": "20 July 1969"}),
        RoutingExample(
            "What is the date 6 weeks before 1 May 2026?",
            {"operation": "subtract", "date": "1 May 2026", "amount": 6, "unit": "weeks"},
        ),
        RoutingExample(
            "How many days until Christmas?", {"operation": "between", "date": "today", "end_date": "Christmas", "unit": "days"}
        ),
        RoutingExample("Is 2028 a leap year?", {"operation": "info", "date": "2028"}),
        RoutingExample(
            "What date is 10 business days from 2 February 2026?",
            {"operation": "add", "date": "2 February 2026", "amount": 10, "unit": "business days"},
        ),
        RoutingExample("Which week number is 15 March 2026?", {"operation": "info", "date": "15 March 2026"}),
        RoutingExample(
            "How many months are there from January 2025 to October 2026?",
            {"operation": "between", "date": "January 2025", "end_date": "October 2026", "unit": "months"},
        ),
        RoutingExample(
            "What will the date be 3 months after 31 January 2026?",
            {"operation": "add", "date": "31 January 2026", "amount": 3, "unit": "months"},
        ),
    ]

    answer_template = "{{ text }}"

    def __init__(self, today: dt.date | None = None) -> None:
        super().__init__()
        self.today = today

    def run(self, args: BaseModel) -> ExpertResult:
        """Compute with :func:`compute`.

        Raises:
            ExpertError: see :func:`compute`.
        """
        a = args
        return compute(
            a.operation, a.date, end_date=a.end_date, amount=a.amount, unit=a.unit, today=self.today  # type: ignore[attr-defined]
        )

    def symbolic_args(self, question: str) -> dict[str, Any] | None:
        """Arguments when the whole question is one of the calendar questions the parser knows
        ("what weekday is 90 days after 3 March 2026", "days between 1 Jan 2026 and 25 Dec 2026",
        "what day of the week was 20 July 1969", "is 2028 a leap year") and it computes; else ``None``."""
        q = " ".join(question.split()).rstrip("?!. ")
        if len(q) > _MAX_QUESTION_CHARS:  # a calendar question is short; long text would only cost regex time
            return None
        for pat, build in _PATTERNS:
            m = pat.fullmatch(q)
            if not m:
                continue
            try:
                args = build({k: v for k, v in m.groupdict().items() if v is not None})
                parsed = self.parse_args(args)
                self.run(parsed)
            except Exception:  # noqa: BLE001 - a question this parser cannot fully read is not its
                continue
            return parsed.model_dump(mode="json", exclude_none=True)
        return None
