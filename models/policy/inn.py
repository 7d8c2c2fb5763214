"""Russian taxpayer numbers (ИНН): checksum validation and extraction from free text.

A 10-digit INN belongs to an organisation, a 12-digit one to a person or sole proprietor (ИП).
The control digits are weighted sums modulo 11 (then modulo 10), as defined by the Federal Tax
Service; validating them keeps phone numbers and invoice numbers from being taken for an INN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_W10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_W11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_W12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)

# Runs of ten digits or more; only a run of exactly 10 or 12 is a candidate (so a 16-digit card number is
# ignored). The same as (?<!\d)(\d{12}|\d{10})(?!\d), several times faster on long texts without such runs.
_DIGIT_RUN = re.compile(r"\d{10,}")


@dataclass(frozen=True, slots=True)
class InnMatch:
    inn: str
    start: int
    end: int


def _control(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def is_valid_inn(value: str) -> bool:
    """True for a 10- or 12-digit INN whose control digit(s) are right."""
    if not value.isascii() or not value.isdigit() or set(value) == {"0"}:
        return False
    if len(value) == 10:
        return _control(value, _W10) == int(value[9])
    if len(value) == 12:
        return _control(value, _W11) == int(value[10]) and _control(value, _W12) == int(value[11])
    return False


def find_inns(text: str) -> list[InnMatch]:
    """Valid INNs written in `text`, in order, each once."""
    seen: set[str] = set()
    found: list[InnMatch] = []
    for m in _DIGIT_RUN.finditer(text):
        inn = m.group()
        if len(inn) in (10, 12) and inn not in seen and is_valid_inn(inn):
            seen.add(inn)
            found.append(InnMatch(inn, m.start(), m.end()))
    return found
