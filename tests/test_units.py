"""Unit conversion expert (pint): conversions, temperatures with offsets, the symbolic parser, bad input."""

from __future__ import annotations

import pytest

from conftest import ScriptedBackend, card_scorer
from experts.units import UnitsExpert, convert, parse_number, parse_unit
from mrkl import MRKL
from mrkl.errors import ArgumentError, ExpertError
from router import LLMRouter


@pytest.mark.parametrize(
    "value, src, dst, expected, text",
    [
        (26.2, "miles", "km", 42.1648128, "26.2 mi = 42.1648 km"),
        (100, "F", "C", 37.77777777777778, "100 °F = 37.7778 °C"),
        (-40, "degrees Celsius", "Fahrenheit", -40.0, "-40 °C = -40 °F"),
        (0, "C", "K", 273.15, "0 °C = 273.15 K"),
        (300, "kelvin", "celsius", 26.85, "300 K = 26.85 °C"),
        (98.6, "°F", "°C", 37.0, "98.6 °F = 37 °C"),
        (1, "pound", "ounces", 16.0, "1 lb = 16 oz"),
        (70, "kg", "lbs", 154.3236179, "70 kg = 154.324 lb"),
        (60, "mph", "km/h", 96.56064, "60 mph = 96.5606 km/h"),
        (3, "gallons", "liters", 11.356235352, "3 gal = 11.3562 L"),
        (50, "square meters", "square feet", 538.1955208, "50 m² = 538.196 ft²"),
        (1, "cubic meter", "liters", 1000.0, "1 m³ = 1,000 L"),
        ("1,000", "metres", "miles", 0.621371192, "1,000 m = 0.621371 mi"),
        ("a", "mile", "feet", 5280.0, "1 mi = 5,280 ft"),
        (1, "light year", "km", 9.4607304725808e12, "1 ly = 9,460,730,000,000 km"),
        (1, "nautical mile", "meters", 1852.0, "1 nmi = 1,852 m"),
        (3, "cups", "milliliters", 709.76471, "3 cup = 709.765 ml"),
        (12, "fl oz", "ml", 354.8823, "12 fl oz = 354.882 ml"),
    ],
)
def test_conversions(value, src, dst, expected, text):
    result = convert(value, src, dst)
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert result.text == text


def test_compound_units_with_temperature_convert_as_differences():
    assert convert(10, "degC/s", "K/s").value == pytest.approx(10)  # a rate of change: no offset
    assert convert(1, "degC * meter", "degF * meter").value == pytest.approx(1.8)


def test_offset_temperatures_are_not_scaled_linearly():
    # 100 °F is 37.78 °C, not 100 * 5/9 = 55.56 °C; and 0 °F is -17.78 °C, not 0
    assert convert(100, "F", "C").value == pytest.approx(37.7778, rel=1e-5)
    assert convert(0, "F", "C").value == pytest.approx(-17.7778, rel=1e-5)
    assert convert(37, "C", "F").value == pytest.approx(98.6)


def test_single_letter_f_and_c_are_temperatures_and_k_kelvin():
    assert str(parse_unit("F")) == "degree_Fahrenheit"
    assert str(parse_unit("C")) == "degree_Celsius"
    assert str(parse_unit("K")) == "kelvin"
    assert str(parse_unit("km")) == "kilometer"
    assert str(parse_unit("miles per hour")) == "mile / hour"


@pytest.mark.parametrize(
    "value, src, dst, message",
    [
        (5, "kg", "meters", "cannot convert kg (mass) to m (length): they measure different things"),
        (1, "foo", "m", "unknown unit 'foo'; did you mean 'foot'?"),
        (1, "zzqx", "m", "unknown unit 'zzqx'"),
        (1, "__import__('os').system('x')", "m", "is not a unit name"),
        (1, "m" * 100, "km", "is not a unit name"),
        (1, "", "km", "a unit is needed"),
        ("ten-ish", "m", "km", "the value to convert must be a number"),
        ("nan", "m", "km", "the value to convert must be a number"),
        (1e300, "light_year", "nm", "too large to represent"),
        (1, "dollars", "euros", "unknown unit 'dollars'"),
    ],
)
def test_bad_input_is_a_clear_error(value, src, dst, message):
    with pytest.raises(ExpertError) as err:
        convert(value, src, dst)
    assert message in str(err.value)


def test_parse_number():
    assert parse_number("1,234.5") == 1234.5
    assert parse_number("1/4") == 0.25
    assert parse_number("a dozen") == 12
    assert parse_number(-40) == -40.0
    for bad in ["inf", "1/0", "", "1,23", True, "1e999"]:
        with pytest.raises(ValueError):
            parse_number(bad)


def test_args_schema_rejects_bad_arguments():
    expert = UnitsExpert()
    assert expert.parse_args({"value": "26.2", "from_unit": "miles", "to_unit": "km"}).value == 26.2
    with pytest.raises(ArgumentError, match="value"):
        expert.parse_args({"value": "lots", "from_unit": "miles", "to_unit": "km"})
    with pytest.raises(ArgumentError, match="to_unit"):
        expert.parse_args({"value": 1, "from_unit": "miles"})
    with pytest.raises(ArgumentError, match="Extra inputs are not permitted"):
        expert.parse_args({"value": 1, "from_unit": "miles", "to_unit": "km", "precision": 3})


@pytest.mark.parametrize(
    "question, args",
    [
        ("how many km is 26.2 miles", {"value": 26.2, "from_unit": "miles", "to_unit": "km"}),
        ("100 F in C", {"value": 100.0, "from_unit": "F", "to_unit": "C"}),
        ("What is 100 fahrenheit in celsius?", {"value": 100.0, "from_unit": "fahrenheit", "to_unit": "celsius"}),
        ("How many feet in a mile?", {"value": 1.0, "from_unit": "mile", "to_unit": "feet"}),
        ("How many ounces are in a pound?", {"value": 1.0, "from_unit": "pound", "to_unit": "ounces"}),
        ("Convert 1,000 metres to miles", {"value": 1000.0, "from_unit": "metres", "to_unit": "miles"}),
        ("26.2 miles is how many km?", {"value": 26.2, "from_unit": "miles", "to_unit": "km"}),
        ("what is 98.6 °F in °C", {"value": 98.6, "from_unit": "°F", "to_unit": "°C"}),
    ],
)
def test_symbolic_parser_understands_whole_questions(question, args):
    assert UnitsExpert().symbolic_args(question) == args


@pytest.mark.parametrize(
    "question",
    [
        "how many dollars is 100 euros",  # currencies are not pint units
        "convert 5 kg to meters",  # incompatible: left to the router, which gets the clear error
        "what is 2+2",
        "how many km is it from Paris to Berlin",
        "",
    ],
)
def test_symbolic_parser_declines_what_it_does_not_understand(question):
    assert UnitsExpert().symbolic_args(question) is None


def test_every_routing_example_validates_and_runs():
    expert = UnitsExpert()
    assert 6 <= len(expert.examples) <= 10
    for ex in expert.examples:
        assert expert.run(expert.parse_args(ex.args)).text


def test_through_the_system_the_parser_beats_wrong_router_args():
    backend = ScriptedBackend(card_scorer("units"), outputs=['value": 26, "from_unit": "km", "to_unit": "miles"}'])
    answer = MRKL(experts=[UnitsExpert()], backend=backend, router=LLMRouter(backend)).ask("how many km is 26.2 miles?")
    assert answer.expert == "units" and answer.text == "26.2 mi = 42.1648 km"
    assert answer.value == pytest.approx(42.1648128)


def test_a_long_hostile_question_does_not_stall_the_parser():
    import time

    t0 = time.perf_counter()
    assert UnitsExpert().symbolic_args("how many " + "a " * 1990 + "is 5 x") is None
    assert time.perf_counter() - t0 < 0.5
