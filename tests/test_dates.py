"""Dates expert: date arithmetic, calendar questions, the symbolic parser, bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import ScriptedBackend, card_scorer
from experts.dates import DatesExpert, compute, parse_date
from mrkl import MRKL
from mrkl.errors import ArgumentError, ExpertError
from router import LLMRouter

TODAY = dt.date(2026, 11, 29)  # a Sunday


def test_weekday_90_days_after_3_march_2026():
    r = compute("add", "3 March 2026", amount=90, today=TODAY)
    assert r.value == "2026-06-01"
    assert r.text == "90 days after Tuesday, 3 March 2026 was Monday, 1 June 2026."


def test_days_between_1_jan_and_25_dec_2026():
    r = compute("between", "1 Jan 2026", end_date="25 Dec 2026", today=TODAY)
    assert r.value == 358
    assert r.text == "There are 358 days from Thursday, 1 January 2026 to Friday, 25 December 2026."


@pytest.mark.parametrize(
    "operation, date, kwargs, value",
    [
        ("subtract", "1 May 2026", {"amount": 6, "unit": "weeks"}, "2026-03-20"),
        ("add", "31 January 2026", {"amount": 1, "unit": "months"}, "2026-02-28"),  # clipped to the month's end
        ("add", "31 January 2028", {"amount": 1, "unit": "months"}, "2028-02-29"),  # leap year
        ("add", "29 February 2024", {"amount": 1, "unit": "years"}, "2025-02-28"),
        ("add", "2 February 2026", {"amount": 10, "unit": "business days"}, "2026-02-16"),
        ("add", "Friday 6 March 2026", {"amount": 1, "unit": "business days"}, "2026-03-09"),  # over the weekend
        ("subtract", "9 March 2026", {"amount": 1, "unit": "business days"}, "2026-03-06"),
        ("add", "3 March 2026", {"amount": -3, "unit": "days"}, "2026-02-28"),
        ("add", "today", {"amount": 1, "unit": "days"}, "2026-11-30"),
        ("add", "2026-12-31", {"amount": 1, "unit": "days"}, "2027-01-01"),
    ],
)
def test_date_arithmetic(operation, date, kwargs, value):
    assert compute(operation, date, today=TODAY, **kwargs).value == value


@pytest.mark.parametrize(
    "date, end, unit, value, phrase",
    [
        ("1 Jan 2026", "25 Dec 2026", "weeks", pytest.approx(358 / 7, rel=1e-6), "51 weeks and 1 day (358 days)"),
        ("January 2025", "October 2026", "months", 21, "21 whole months"),
        ("15 June 1990", "29 November 2026", "years", 36, "36 whole years and 5 months, 14 days"),
        ("2 February 2026", "16 February 2026", "business days", 10, "10 business days"),
        ("25 Dec 2026", "1 Jan 2026", "days", -358, "-358 days"),
        ("1 March 2028", "1 March 2028", "days", 0, "0 days"),
        ("1 Jan 2028", "1 Jan 2029", "days", 366, "366 days"),
    ],
)
def test_between(date, end, unit, value, phrase):
    r = compute("between", date, end_date=end, unit=unit, today=TODAY)
    assert r.value == value
    assert phrase in r.text


def test_weekday_and_tense():
    assert compute("weekday", "20 July 1969", today=TODAY).text == "20 July 1969 was a Sunday."
    assert compute("weekday", "today", today=TODAY).text == "29 November 2026 is a Sunday."
    assert compute("weekday", "Christmas 2026", today=TODAY).text == "25 December 2026 will be a Friday."


def test_info_and_leap_years():
    r = compute("info", "15 March 2026", today=TODAY)
    assert r.value["iso_week"] == 11 and r.value["day_of_year"] == 74 and r.value["days_in_month"] == 31
    assert compute("info", "February 2028", today=TODAY).value["days_in_month"] == 29
    assert compute("info", "2028", today=TODAY).text == "2028 is a leap year: it has 366 days and starts on a Saturday."
    assert compute("info", "2100", today=TODAY).value["leap_year"] is False  # divisible by 100, not 400
    assert compute("info", "2000", today=TODAY).value["leap_year"] is True


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3 March 2026", dt.date(2026, 3, 3)),
        ("March 3rd, 2026", dt.date(2026, 3, 3)),
        ("3rd of March 2026", dt.date(2026, 3, 3)),
        ("2026-03-03", dt.date(2026, 3, 3)),
        ("3/4/2026", dt.date(2026, 3, 4)),  # month first
        ("25 Dec", dt.date(2026, 12, 25)),
        ("March 2026", dt.date(2026, 3, 1)),
        ("tomorrow", dt.date(2026, 11, 30)),
        ("yesterday", dt.date(2026, 11, 28)),
        ("Christmas", dt.date(2026, 12, 25)),
        ("Halloween", dt.date(2027, 10, 31)),  # the next one: this year's has passed
        ("New Year's Day", dt.date(2027, 1, 1)),
        ("christmas 1999", dt.date(1999, 12, 25)),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: compute("add", "someday", amount=3, today=TODAY), "could not read the date 'someday'"),
        (lambda: compute("add", "31 February 2026", amount=3, today=TODAY), "could not read the date '31 February 2026'"),
        (lambda: compute("add", "3 March 2026", today=TODAY), "'add' needs an amount"),
        (lambda: compute("between", "3 March 2026", today=TODAY), "'between' needs an end date"),
        (lambda: compute("add", "3 March 9999", amount=1, unit="years", today=TODAY), "outside the calendar"),
        (lambda: compute("subtract", dt.date(1, 1, 1), amount=1, today=TODAY), "outside the calendar"),
        (lambda: compute("add", "3 March 2026", amount=10**9, today=TODAY), "too large"),
        (lambda: compute("explode", "3 March 2026", today=TODAY), "unknown operation 'explode'"),
        (lambda: compute("add", "3 March 2026", amount=1, unit="fortnights", today=TODAY), "unknown unit"),
        (lambda: compute("info", "0", today=TODAY), "outside the calendar"),
        (lambda: compute("weekday", "x" * 100, today=TODAY), "too long to be a date"),
        (lambda: compute("weekday", "2026", today=TODAY), "is a year or a number, not a date"),
        (lambda: compute("weekday", "{{ 7*7 }}", today=TODAY), "could not read the date"),
        (lambda: compute("weekday", "", today=TODAY), "a date is needed"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ExpertError) as err:
        call()
    assert message in str(err.value)


def test_args_schema():
    expert = DatesExpert(today=TODAY)
    a = expert.parse_args({"operation": "add", "date": "3 March 2026", "amount": 2, "unit": "fortnight"})
    assert a.unit == "weeks"  # 'fortnight' normalised to weeks (the parser doubles the amount)
    assert expert.parse_args({"operation": "info", "date": 2028}).date == "2028"
    with pytest.raises(ArgumentError, match="operation"):
        expert.parse_args({"operation": "multiply", "date": "today"})
    with pytest.raises(ArgumentError, match="amount"):
        expert.parse_args({"operation": "add", "date": "today", "amount": 2.5})
    with pytest.raises(ArgumentError, match="unit"):
        expert.parse_args({"operation": "add", "date": "today", "amount": 2, "unit": "eons"})


@pytest.mark.parametrize(
    "question, args",
    [
        ("What weekday is 90 days after 3 March 2026?", {"operation": "add", "date": "3 March 2026", "amount": 90, "unit": "days"}),
        ("days between 1 Jan 2026 and 25 Dec 2026", {"operation": "between", "date": "1 Jan 2026", "end_date": "25 Dec 2026", "unit": "days"}),
        ("What day of the week was 20 July 1969?", {"operation": "weekday", "date": "20 July 1969", "unit": "days"}),
        ("What was the date 30 days before 15 March 2026?", {"operation": "subtract", "date": "15 March 2026", "amount": 30, "unit": "days"}),
        ("what is 3 March 2026 plus 2 weeks", {"operation": "add", "date": "3 March 2026", "amount": 2, "unit": "weeks"}),
        ("two fortnights after 1 March 2026", {"operation": "add", "date": "1 March 2026", "amount": 4, "unit": "weeks"}),
        ("How many weeks until New Year?", {"operation": "between", "date": "today", "end_date": "New Year", "unit": "weeks"}),
        ("how many days since 1 January 2000", {"operation": "between", "date": "1 January 2000", "end_date": "today", "unit": "days"}),
        ("What day of the week does Christmas 2026 fall on?", {"operation": "weekday", "date": "Christmas 2026", "unit": "days"}),
        ("Is 2100 a leap year?", {"operation": "info", "date": "2100", "unit": "days"}),
        ("How many days are in February 2028?", {"operation": "info", "date": "February 2028", "unit": "days"}),
        ("What will the date be 3 months after 31 January 2026?", {"operation": "add", "date": "31 January 2026", "amount": 3, "unit": "months"}),
        ("What date is 10 business days from 2 February 2026?", {"operation": "add", "date": "2 February 2026", "amount": 10, "unit": "business days"}),
    ],
)
def test_symbolic_parser_understands_whole_questions(question, args):
    assert DatesExpert(today=TODAY).symbolic_args(question) == args


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "what day is it",
        "how many days between 31 Feb 2026 and 1 Mar 2026",  # not a date: left to the router, which gets the error
        "what weekday is 90 days after my birthday",
        "how many km is 26.2 miles",
    ],
)
def test_symbolic_parser_declines_what_it_does_not_understand(question):
    assert DatesExpert(today=TODAY).symbolic_args(question) is None


def test_every_routing_example_validates_runs_and_is_parsed():
    expert = DatesExpert(today=TODAY)
    assert 6 <= len(expert.examples) <= 10
    for ex in expert.examples:
        parsed = expert.parse_args(ex.args)
        assert expert.run(parsed).text
        assert expert.symbolic_args(ex.question) == parsed.model_dump(mode="json", exclude_none=True), ex.question


def test_through_the_system():
    backend = ScriptedBackend(card_scorer("dates"), outputs=['operation": "add", "date": "3 March", "amount": 9}'])
    system = MRKL(experts=[DatesExpert(today=TODAY)], backend=backend, router=LLMRouter(backend))
    answer = system.ask("What weekday is 90 days after 3 March 2026?")
    assert answer.expert == "dates" and answer.value == "2026-06-01"
    assert "Monday, 1 June 2026" in answer.text


def test_a_long_hostile_question_does_not_stall_the_parser():
    import time

    t0 = time.perf_counter()
    assert DatesExpert(today=TODAY).symbolic_args("how many days between " + "1 and " * 700 + "x") is None
    assert time.perf_counter() - t0 < 0.5
