"""The range of numbers a spec may hold, and how to name a number that is out of it.

Every integer of a spec (a literal, a computed value, a model argument) has |value| < 2**63,
every size and count (a dimension, a kernel, a number of layers or epochs, a seed) is below
2**53, and every float is finite. The bounds are checked where a number enters, before it is
converted, printed or used in a formula, so that nothing later has to guard against a
number of thousands of digits: Python refuses to print one (over 4,300 digits), turns it into
a float only with an OverflowError, and spends minutes on an exponentiation that makes one.
"""

from __future__ import annotations

import math
from typing import Any

MAX_INT = 2**63  # |int| < MAX_INT: what an int64 holds, and so torch, ONNX and JSON readers
MAX_COUNT = 2**53  # sizes and counts: exact as a float64, so formulas with `/` stay exact
MAX_LITERAL_DIGITS = 19  # 2**63 has 19 digits: a longer literal is out of range unread
_SHOWN_DIGITS = 24  # an integer up to this long is shown whole


def int_in_range(value: int) -> bool:
    return -MAX_INT < value < MAX_INT


def count_in_range(value: int) -> bool:
    return -MAX_COUNT < value < MAX_COUNT


def digits(value: int) -> int:
    """The number of decimal digits of ``value``, without converting it to a string (which
    Python refuses past 4,300 digits and which costs quadratic time before that)."""
    n = abs(value)
    if n < 10:
        return 1
    guess = int(n.bit_length() * math.log10(2))  # exact or one too small
    return guess + 1 if n >= 10**guess else guess


def show(value: Any) -> str:
    """A number for a message: whole when short, else its size (`a 4,353-digit integer`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return repr(value) if isinstance(value, float) else str(value)
    count = digits(value)
    if count <= _SHOWN_DIGITS:
        return str(value)
    sign = "negative " if value < 0 else ""
    return f"a {sign}{count:,}-digit integer"


def show_literal(text: str) -> str:
    """A literal's text for a message, cut when long: `1000…000 (4,353 characters)`."""
    if len(text) <= 40:
        return text
    return f"{text[:12]}…{text[-6:]} ({len(text):,} characters)"


RANGE_NOTE = "integers must lie strictly between -2^63 and 2^63"
COUNT_NOTE = "sizes and counts must be below 2^53"


def fits_pow(base: int | float, exponent: int | float) -> bool:
    """Whether ``base ** exponent`` can be computed cheaply and might be in range: an integer
    power is refused when its result would have more than 64 bits, judged from the operands'
    sizes before anything is computed (a float power overflows to an error by itself)."""
    if not isinstance(base, int) or not isinstance(exponent, int) or exponent < 0:
        return True
    if abs(base) <= 1:
        return True
    return exponent * (abs(base).bit_length() - 1) <= 64
