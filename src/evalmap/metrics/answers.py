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


# -- MATH / competition answers --------------------------------------------------------

# lm-eval minerva_math `get_unnormalized_answer`: the text between the Minerva closing
# phrase and ". I hope it is correct." (the phrase may end the output without that tail).
_MINERVA_FINAL = re.compile(r"Final Answer: The final answer is(.*?)(?:\. I hope it is correct\.|$)", re.S)
_ANSWER_IS = re.compile(r"(?:final )?answer is[:\s]*(.+?)(?:\.\s|\.?$|\n)", re.I | re.M)


def _strip_math(text: str) -> str | None:
    s = text.strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$").strip()
    s = s.removeprefix("\\(").removesuffix("\\)").strip()
    s = s.rstrip(".").strip()
    return s or None


def extract_minerva_answer(text: str) -> str | None:
    """The answer of Minerva's "Final Answer: The final answer is $X$. I hope it is correct." (last one)."""
    if not isinstance(text, str):
        return None
    matches = _MINERVA_FINAL.findall(text)
    if not matches:
        return None
    return _strip_math(matches[-1])


def extract_answer_is(text: str) -> str | None:
    """The span after the last "The answer is" / "the final answer is" up to the sentence end."""
    if not isinstance(text, str):
        return None
    matches = _ANSWER_IS.findall(text)
    return _strip_math(matches[-1]) if matches else None


def extract_math_answer(text: str) -> str | None:
    """A competition-math answer from free text: \\boxed{} first, then Minerva's "Final Answer:",
    then "The answer is", then the last number. Raw LaTeX; compare with `math_equal`."""
    if not isinstance(text, str):
        return None
    for extract in (extract_boxed, extract_minerva_answer, extract_answer_is):
        out = extract(text)
        if out:
            return out
    return extract_last_number(text)


def normalize_integer(text: str | None) -> str | None:
    """An AIME answer as a canonical integer string ("033" -> "33", "$204$" -> "204", "70.0" -> "70");
    None when the answer is not an integer."""
    if not isinstance(text, str):
        return None
    s = _strip_math(text.replace("\\!", "").replace("{,}", ""))
    if s is None:
        return None
    s = re.sub(r"^\\(?:text|mathrm|mathbf)\{(.*)\}$", r"\1", s).strip()
    out = _as_number(s)
    if out is None or not re.fullmatch(r"-?\d+", out):
        return None
    return str(int(out))


# -- multiple-choice letters -----------------------------------------------------------

_LETTER_PATTERNS = (
    r"answer is:?\s*\(?\s*\**\s*([{L}])\b",  # "The answer is (B)", "the answer is: **B**"
    r"answer:\s*\(?\s*\**\s*([{L}])\b",  # "Answer: C"
)


def extract_choice_letter(text: str, letters: str = "ABCD") -> str | None:
    """The option letter a chain-of-thought answer ends on, or None.

    Tries, in order: the last "The answer is (X)" / "answer is X", the last "Answer: X",
    then the last standalone letter of the options ("(B)", "B.", " B " but not the
    "A" of "A man"; a lone capital next to a lowercase word is skipped when it is "A" or "I").
    """
    if not isinstance(text, str) or not text.strip():
        return None
    cls = re.escape(letters)
    for pattern in _LETTER_PATTERNS:
        found = re.findall(pattern.replace("{L}", cls), text, flags=re.I)
        found = [f.upper() for f in found if f.upper() in letters]
        if found:
            return found[-1]
    bracketed = re.findall(rf"\(([{cls}])\)", text)
    if bracketed:
        return bracketed[-1]
    candidates = []
    for m in re.finditer(rf"(?<![A-Za-z0-9'])([{cls}])(?![A-Za-z0-9'])", text):
        letter, rest = m.group(1), text[m.end() :]
        if letter in "AI" and re.match(r"\s+[a-z]", rest):  # the article "A man", the pronoun "I think"
            continue
        candidates.append(letter)
    return candidates[-1] if candidates else None
