"""SMS segments: GSM-7 (160 / 153 septets) or UCS-2 (70 / 67 UTF-16 units)."""

import pytest

from channels.sms.segments import GSM_BASIC, GSM_EXTENSION, segments

EURO, EMOJI = "€", "\N{GRINNING FACE}"


def test_the_gsm_alphabet_is_the_basic_set_less_the_escape_plus_the_extension_table():
    assert len(GSM_BASIC) == 127
    assert len(GSM_EXTENSION) == 10
    assert not GSM_BASIC & GSM_EXTENSION


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", ("GSM-7", 0)),
        ("Sorry! Fixing it now.", ("GSM-7", 1)),
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("Ça coûte", ("UCS-2", 1)),  # û is not in GSM 03.38
        ("Ça va? ÆØÅ ß ¿¡ Δ@£$¥ èéùìò", ("GSM-7", 1)),
        ("line one\nline two\r\n", ("GSM-7", 1)),
        # the extension table takes two septets a character
        (EURO * 80, ("GSM-7", 1)),
        (EURO * 81, ("GSM-7", 2)),
        ("a" * 158 + "[]", ("GSM-7", 2)),
        ("a" * 156 + "{}", ("GSM-7", 1)),
        ("^|~\\" + "\f", ("GSM-7", 1)),
        # ...and never straddles two parts: 306 septets, but three parts
        ("a" * 152 + EURO + "a" * 152, ("GSM-7", 3)),
        ("a" * 151 + EURO + "a" * 153, ("GSM-7", 2)),
        # one character outside GSM sends the whole body as UCS-2
        ("Привет", ("UCS-2", 1)),
        ("я" * 70, ("UCS-2", 1)),
        ("я" * 71, ("UCS-2", 2)),
        ("я" * 134, ("UCS-2", 2)),
        ("я" * 135, ("UCS-2", 3)),
        ("a" * 69 + "ç", ("UCS-2", 1)),  # only the capital Ç is GSM
        ("你好我的账单不对", ("UCS-2", 1)),
        # an emoji is a surrogate pair: two UTF-16 units, never split across parts
        ("Thanks " + EMOJI, ("UCS-2", 1)),
        (EMOJI * 35, ("UCS-2", 1)),
        (EMOJI * 36, ("UCS-2", 2)),
        ("a" * 69 + EMOJI, ("UCS-2", 2)),
        ("a" * 66 + EMOJI + "a" * 66, ("UCS-2", 3)),  # 134 units, but three parts
        ("a" * 65 + EMOJI + "a" * 67, ("UCS-2", 2)),
    ],
)
def test_segments_and_encoding_of_known_bodies(body, expected):
    assert segments(body) == expected
