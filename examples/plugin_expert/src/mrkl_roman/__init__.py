"""An example mrkl plugin: convert between integers and Roman numerals.

Installed with ``pip install examples/plugin_expert``, it is found by
:meth:`mrkl.ExpertRegistry.load_plugins` through the ``mrkl.experts`` entry point
declared in its ``pyproject.toml``, and ``mrkl experts`` lists it as
``plugin:mrkl-roman:roman_numeral``.
"""

from mrkl import ExpertError, expert

_VALUES = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
           (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def to_roman(n: int) -> str:
    """``n`` (1..3999) in standard Roman numerals; ValueError outside that range."""
    if not 1 <= n <= 3999:
        raise ValueError(f"Roman numerals cover 1 to 3999, not {n}")
    out = []
    for value, letters in _VALUES:
        count, n = divmod(n, value)
        out.append(letters * count)
    return "".join(out)


def from_roman(text: str) -> int:
    """The integer of a standard Roman numeral (case-insensitive); ValueError if it is not one."""
    s = text.strip().upper()
    total, i = 0, 0
    for value, letters in _VALUES:
        while s.startswith(letters, i):
            total, i = total + value, i + len(letters)
    if not s or i != len(s) or to_roman(total) != s:
        raise ValueError(f"{text!r} is not a standard Roman numeral")
    return total


@expert(examples=[
    ("what is 1994 in Roman numerals?", {"value": "1994"}),
    ("write 2026 as a Roman numeral", {"value": "2026"}),
    ("what number is MCMLXXXIV?", {"value": "MCMLXXXIV"}),
    ("convert the Roman numeral XLII to a number", {"value": "XLII"}),
])
def roman_numeral(value: str) -> str:
    """Convert between numbers and Roman numerals (1 to 3999), either way.

    Args:
        value: an integer such as "1994", or a Roman numeral such as "MCMXCIV"
    """
    try:
        return to_roman(int(value)) if value.strip().isdigit() else str(from_roman(value))
    except ValueError as exc:
        raise ExpertError(str(exc)) from None
