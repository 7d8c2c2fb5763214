import pytest

from models.policy.inn import find_inns, is_valid_inn


@pytest.mark.parametrize("inn", ["7707083893", "7736207543", "7830002293", "500100732259"])
def test_real_format_inns_with_right_control_digits_are_valid(inn):
    assert is_valid_inn(inn)


@pytest.mark.parametrize("inn", ["7707083894", "7736207544", "500100732258", "500100732269", "0000000000",
                                 "770708389", "77070838931", "77070838９3"])
def test_wrong_control_digit_length_or_non_ascii_digits_are_invalid(inn):
    assert not is_valid_inn(inn)


def test_find_inns_reports_valid_ones_with_offsets_and_skips_longer_digit_runs():
    text = "ИНН 7707083893, тел. 79161234567, карта 4276380012345678, ИП ИНН 500100732259"
    found = find_inns(text)
    assert [m.inn for m in found] == ["7707083893", "500100732259"]
    assert text[found[0].start:found[0].end] == "7707083893"


def test_find_inns_ignores_invalid_checksum():
    assert find_inns("ИНН 1234567890") == []


def test_the_digit_run_search_finds_what_the_lookaround_pattern_finds() -> None:
    import random
    import re

    from models.policy.inn import find_inns, is_valid_inn

    reference = re.compile(r"(?<!\d)(\d{12}|\d{10})(?!\d)")
    rng = random.Random(11)
    pieces = ["7707083893", "500100732259", "1234567890123456", "77070838931", " ", "ИНН ", "x", "٣", "\n", "-"]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) + str(rng.randrange(10 ** rng.randrange(1, 13))) for _ in range(6))
        expected, seen = [], set()
        for m in reference.finditer(text):
            if m.group(1) not in seen and is_valid_inn(m.group(1)):
                seen.add(m.group(1))
                expected.append((m.group(1), m.start(1), m.end(1)))
        assert [(i.inn, i.start, i.end) for i in find_inns(text)] == expected
