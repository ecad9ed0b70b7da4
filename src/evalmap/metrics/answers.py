"""Answer extraction and comparison for generated text: numbers, \\boxed{}, math equivalence.

Every function here takes whatever a model wrote and never raises: garbage in gives
`None` (nothing extracted) or `False` (not equal), so one odd sample cannot stop a
job. The gsm8k regexes are lm-evaluation-harness's (`gsm8k_cot` strict-match and
flexible-extract) so scores compare with its numbers.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation

# lm-eval gsm8k_cot "strict-match": first match, group 1. The final "." matches any
# character, exactly as lm-eval's pattern does.
STRICT_GSM8K = re.compile(r"The answer is (\-?[0-9\.\,]+).")
# lm-eval "flexible-extract": last match, first non-empty group.
LAST_NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")

_MAX_MATH_CHARS = 4000  # longer strings are cut before sympy sees them: parsing is superlinear


def extract_strict_gsm8k(text: str) -> str | None:
    """The number after the first "The answer is" (lm-eval strict-match), raw; None if absent."""
    if not isinstance(text, str):
        return None
    match = STRICT_GSM8K.search(text)
    return match.group(1) if match else None


def extract_last_number(text: str) -> str | None:
    """The last number-like span of `text` (lm-eval flexible-extract), raw; None if absent."""
    if not isinstance(text, str):
        return None
    matches = LAST_NUMBER.findall(text)
    if not matches:
        return None
    last = [group for group in matches[-1] if group]
    return last[0] if last else None


def normalize_number(text: str | None) -> str | None:
    """Canonical form of a numeric answer: "$1,000.00" -> "1000", "-3.50" -> "-3.5", "18." -> "18".

    Drops what lm-eval's gsm8k `regexes_to_ignore` drop (",", "$", a "#### " prefix, a
    trailing ".") and, beyond lm-eval, writes equal decimals the same way so "29.00"
    matches "29". Text that is not a number comes back stripped and lower-cased; None
    or nothing left gives None.
    """
    if not isinstance(text, str):
        return None
    s = text.strip()
    if "####" in s:
        s = s.rsplit("####", 1)[1]
    s = s.replace(",", "").replace("$", "").strip()
    s = s.rstrip(".").strip()
    if not s:
        return None
    try:
        value = Decimal(s)
    except (InvalidOperation, ValueError):
        return s.lower()
    if not value.is_finite():
        return s.lower()
    out = str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
    return "0" if out == "-0" else out


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}) with balanced braces; None if absent.

    Also reads the brace-less form "\\boxed 5". A \\boxed whose brace never closes is
    skipped in favour of an earlier complete one.
    """
    if not isinstance(text, str):
        return None
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)(\s*)", text))):
        i = match.end()
        if text.startswith("{", i):
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
        elif match.group(1):
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def _as_number(text: str) -> str | None:
    """normalize_number, but only for text that is a number ("1,2" is a tuple, not 12)."""
    if "," in text and not re.fullmatch(r"\s*-?\$?-?\d{1,3}(,\d{3})+(\.\d*)?\s*", text):
        return None
    out = normalize_number(text)
    return out if out is not None and re.fullmatch(r"-?\d+(\.\d+)?", out) else None


def _looks_bare(text: str) -> bool:
    """A bare expression ("2\\sqrt{2}", "x^2+1") rather than prose: no word of 4+ letters
    outside LaTeX commands."""
    return len(text) < 300 and not re.search(r"[A-Za-z]{4,}", re.sub(r"\\[A-Za-z]+", "", text))


def _parse(text: str, timeout: int | None):
    from math_verify import parse

    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return parse(text, parsing_timeout=timeout)
    # A bare "2\\sqrt{2}" parsed as text yields just 2: read it as LaTeX first.
    order = [f"${text}$", text] if _looks_bare(text) else [text, f"${text}$"]
    for candidate in order:
        parsed = parse(candidate, parsing_timeout=timeout)
        if parsed:
            return parsed
    return []


def math_equal(pred: str | None, gold: str | None) -> bool:
    """True when `pred` and `gold` are the same mathematical answer (math-verify).

    Both may be a bare answer ("\\frac{1}{2}", "0.5"), LaTeX in $...$ or text with a
    \\boxed{}. Never raises: unparsable input, sympy errors and timeouts give False.
    math-verify's own timeouts use SIGALRM, which only the main thread may set, so in
    the runner's scoring threads they are off and inputs are length-capped instead.
    """
    try:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        pred, gold = pred.strip()[-_MAX_MATH_CHARS:], gold.strip()[:_MAX_MATH_CHARS]
        if not pred or not gold:
            return False
        number = _as_number(pred)
        if number is not None and number == _as_number(gold):
            return True
        from math_verify import verify

        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        gold_parsed = _parse(gold, timeout)
        pred_parsed = _parse(pred, timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - any failure to compare is "not equal"
        return False
