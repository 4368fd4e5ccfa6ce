"""Reading the final answer out of a completion, and numbers out of answers.

Shared by the verifier rewards (answer match, format, integer) so that "the answer" means the same
text in all of them: after the last marker (GSM8K's ``#### 42``), inside the last ``<tag>...</tag>``,
or the last number in the completion.
"""

from __future__ import annotations

import re
from fractions import Fraction

# A number as people write it: sign, thousands separators, decimals, an optional currency sign.
_NUMBER = re.compile(r"[-+]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\$?\.\d+")
_PLAIN = re.compile(r"^\s*[-+]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*%?\s*\.?\s*$|^\s*[-+]?\.\d+\s*$")


def extract_answer(completion: str, extract: str, *, marker: str = "####", tag: str = "answer") -> str | None:
    """The answer text, or None when the completion has none where ``extract`` looks.

    marker: the rest of the line after the last ``marker``; tag: the content of the last complete
    ``<tag>...</tag>``; last_number: the last number anywhere.
    """
    if extract == "marker":
        at = completion.rfind(marker)
        if at < 0:
            return None
        answer = completion[at + len(marker) :].strip().split("\n", 1)[0].strip()
        return answer or None
    if extract == "tag":
        found = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", completion, flags=re.DOTALL)
        answer = found[-1].strip() if found else ""
        return answer or None
    if extract == "last_number":
        numbers = _NUMBER.findall(completion)
        return numbers[-1].strip() if numbers else None
    raise ValueError(f"unknown extract mode {extract!r}")


def _to_number(text: str) -> Fraction | None:
    cleaned = text.strip().rstrip(".").strip().replace("$", "").replace(",", "").replace(" ", "").rstrip("%")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def parse_number(text: str) -> Fraction | None:
    """The number an answer states: the whole text when it is one number ('1,250', '$5', '-3.5'), else None.

    Fractions keep '0.1 + 0.2' style rounding out of the comparison: '0.30' equals '0.3' exactly.
    """
    if not _PLAIN.match(text):
        return None
    return _to_number(text)


def first_number(text: str) -> Fraction | None:
    """The first number in an answer ('42 apples' -> 42), for answers with a unit after the number."""
    found = _NUMBER.search(text)
    return _to_number(found.group(0)) if found else None


def is_integer_text(text: str) -> bool:
    """True when the answer is one whole number ('12', '-3', '1,000'; not '3.5', '12 apples')."""
    value = parse_number(text)
    return value is not None and value.denominator == 1 and "." not in text.strip().rstrip(".")
