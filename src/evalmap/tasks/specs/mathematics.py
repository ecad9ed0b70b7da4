"""Mathematics datasets (catalog task type `mathematics`), as data for their kinds.

gsm8k follows lm-evaluation-harness's `gsm8k_cot` task exactly: the 8 chain-of-thought
exemplars of Wei et al. (2022) as "Q: ...\\nA: ...", greedy decoding, and two scores,
`exact_match_strict` ("The answer is N") and `exact_match_flexible` (the last number).

math (Hendrycks MATH, and its MATH-500 variant) follows lm-eval's `minerva_math`: the
4 Minerva exemplars as "Problem:\\n...\\n\\nSolution: ...", and two scores:
`math_verify_accuracy` (the answer in \\boxed{} / "Final Answer: ..." / "The answer
is", compared with math-verify) and `exact_match` (Minerva's strict "Final Answer: The
final answer is X" phrase, compared with math-verify). Scores per subject and level too.
math_competition (AMC 2023) and aime (AIME 2024; aime25 variant) are zero-shot
chain-of-thought with a \\boxed{} instruction, as Qwen2.5-Math evaluates them.

mathqa is multiple choice by log-likelihood over the option texts (lm-eval's `mathqa`).
"""

from __future__ import annotations

import re

from evalmap.metrics.answers import (
    extract_boxed,
    extract_last_number,
    extract_math_answer,
    extract_minerva_answer,
    extract_strict_gsm8k,
    math_equal,
    normalize_integer,
)
from evalmap.tasks.data import DataSource, Record, Text, record_shape
from evalmap.tasks.kinds.generate_extract import GenerativeSpec
from evalmap.tasks.kinds.multiple_choice import MultipleChoiceSpec

# -- gsm8k ---------------------------------------------------------------------------


@record_shape({"id": Text, "question": Text, "answer": Text})
def _gsm8k_records(records: list[Record], origin: str) -> list[Record]:
    return [{"id": str(i), "question": r["question"], "answer": r["answer"]} for i, r in enumerate(records)]


def _gsm8k_target(record: Record) -> str:
    """The gold answer: the text after '#### ' (an exemplar carries its CoT `target`)."""
    if "answer" in record:
        return record["answer"].split("####")[-1].strip()
    return record["target"]


# Wei et al. (2022) chain-of-thought exemplars, verbatim as in lm-eval's gsm8k-cot.yaml.
GSM8K_COT_FEWSHOT: tuple[Record, ...] = (
    {
        "question": "There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
        "After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
        "target": "There are 15 trees originally. Then there were 21 trees after some more were planted. "
        "So there must have been 21 - 15 = 6. The answer is 6.",
    },
    {
        "question": "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
        "the parking lot?",
        "target": "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    },
    {
        "question": "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
        "have left in total?",
        "target": "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. "
        "After eating 35, they had 74 - 35 = 39. The answer is 39.",
    },
    {
        "question": "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How "
        "many lollipops did Jason give to Denny?",
        "target": "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave "
        "Denny 20 - 12 = 8. The answer is 8.",
    },
    {
        "question": "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many "
        "toys does he have now?",
        "target": "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more "
        "toys. 5 + 4 = 9. The answer is 9.",
    },
    {
        "question": "There were nine computers in the server room. Five more computers were installed each "
        "day, from monday to thursday. How many computers are now in the server room?",
        "target": "There were originally 9 computers. For each of 4 days, 5 more computers were added. So "
        "5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    },
    {
        "question": "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 "
        "more. How many golf balls did he have at the end of wednesday?",
        "target": "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
        "After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    },
    {
        "question": "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "target": "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she "
        "has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    },
)

GSM8K = GenerativeSpec(
    dataset_id="gsm8k",
    source=DataSource(name="test", local_files=("test.jsonl",), normalize=_gsm8k_records),
    template="Q: {question}\nA:",
    target=_gsm8k_target,
    fewshot=GSM8K_COT_FEWSHOT,
    default_fewshot=8,
    stop=("Q:", "</s>", "<|im_end|>", "\n\n\n"),
    max_tokens=256,
    metrics=(("exact_match_strict", extract_strict_gsm8k), ("exact_match_flexible", extract_last_number)),
    headline="exact_match_flexible",
)


# -- math (Hendrycks MATH, MATH-500) ---------------------------------------------------


def _math_subject(name: str) -> str:
    """Subject names as EleutherAI/hendrycks_math configs: Counting & Probability -> counting_and_probability."""
    return name.strip().lower().replace("&", "and").replace(" ", "_")


def _math_level(level) -> str:
    text = str(level).strip()
    return text.removeprefix("Level ").strip() or "?"


@record_shape({"id": Text, "problem": Text, "solution": str, "answer": Text, "subject": Text, "level": Text})
def _math_records(records: list[Record], origin: str) -> list[Record]:
    """MATH_test (problem, level 'Level 3', type, solution, idx; gold = last \\boxed{} of the solution),
    MATH-500 (problem, solution, answer, subject, level 3, unique_id) and hub rows to one shape."""
    out = []
    for i, r in enumerate(records):
        answer = r.get("answer")
        if answer is None or answer == "":
            answer = extract_boxed(r.get("solution", "")) or ""
        rid = r.get("unique_id") or r.get("idx", i)
        out.append(
            {
                "id": str(rid),
                "problem": r["problem"],
                "solution": r.get("solution", ""),
                "answer": str(answer),
                "subject": _math_subject(r.get("type") or r.get("subject") or "unknown"),
                "level": _math_level(r.get("level", "?")),
            }
        )
    return out


# The 4 Minerva exemplars (Lewkowycz et al. 2022), verbatim as in lm-eval's minerva_math utils.
MINERVA_FEWSHOT: tuple[Record, ...] = (
    {
        "problem": "Find the domain of the expression  $\\frac{\\sqrt{x-2}}{\\sqrt{5-x}}$.}",
        "solution": "The expressions inside each square root must be non-negative. Therefore, $x-2 \\ge 0$, so "
        "$x\\ge2$, and $5 - x \\ge 0$, so $x \\le 5$. Also, the denominator cannot be equal to zero, so $5-x>0$, "
        "which gives $x<5$. Therefore, the domain of the expression is $\\boxed{[2,5)}$.\n"
        "Final Answer: The final answer is $[2,5)$. I hope it is correct.",
    },
    {
        "problem": "If $\\det \\mathbf{A} = 2$ and $\\det \\mathbf{B} = 12,$ then find "
        "$\\det (\\mathbf{A} \\mathbf{B}).$",
        "solution": "We have that $\\det (\\mathbf{A} \\mathbf{B}) = (\\det \\mathbf{A})(\\det \\mathbf{B}) "
        "= (2)(12) = \\boxed{24}.$\nFinal Answer: The final answer is $24$. I hope it is correct.",
    },
    {
        "problem": "Terrell usually lifts two 20-pound weights 12 times. If he uses two 15-pound weights instead, "
        "how many times must Terrell lift them in order to lift the same total weight?",
        "solution": "If Terrell lifts two 20-pound weights 12 times, he lifts a total of $2\\cdot 12\\cdot20=480$ "
        "pounds of weight.  If he lifts two 15-pound weights instead for $n$ times, he will lift a total of "
        "$2\\cdot15\\cdot n=30n$ pounds of weight.  Equating this to 480 pounds, we can solve for $n$:\n"
        "\\begin{align*}\n30n&=480\\\\\n\\Rightarrow\\qquad n&=480/30=\\boxed{16}\n\\end{align*}\n"
        "Final Answer: The final answer is $16$. I hope it is correct.",
    },
    {
        "problem": "If the system of equations\n\n\\begin{align*}\n6x-4y&=a,\\\\\n6y-9x &=b.\n\\end{align*}"
        "has a solution $(x, y)$ where $x$ and $y$ are both nonzero,\nfind $\\frac{a}{b},$ assuming $b$ is nonzero.",
        "solution": "If we multiply the first equation by $-\\frac{3}{2}$, we obtain\n\n$$6y-9x=-\\frac{3}{2}a.$$"
        "Since we also know that $6y-9x=b$, we have\n\n$$-\\frac{3}{2}a=b\\Rightarrow\\frac{a}{b}="
        "\\boxed{-\\frac{2}{3}}.$$\nFinal Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
    },
)


def _identity(text: str | None) -> str | None:
    return text.strip() if isinstance(text, str) and text.strip() else None


MATH = GenerativeSpec(
    dataset_id="math",
    source=DataSource(name="test", local_files=("MATH_test.jsonl.gz",), normalize=_math_records),
    variants={"math500": DataSource(name="test", local_files=("MATH-500_test.jsonl",), normalize=_math_records)},
    template="Problem:\n{problem}\n\nSolution:",
    target=lambda r: r["answer"],
    fewshot_target=lambda r: r["solution"],
    fewshot=MINERVA_FEWSHOT,
    default_fewshot=4,
    stop=("Problem:", "</s>", "<|im_end|>"),
    max_tokens=512,
    metrics=(("math_verify_accuracy", extract_math_answer), ("exact_match", extract_minerva_answer)),
    normalize=_identity,
    compare=math_equal,
    groups=(("subject", lambda r: r["subject"]), ("level", lambda r: r["level"])),
)


# -- math_competition (AMC 2023) and aime (AIME 2024 / 2025) ---------------------------

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{{}}."


@record_shape({"id": Text, "problem": Text, "answer": Text})
def _competition_records(records: list[Record], origin: str) -> list[Record]:
    """Qwen2.5-Math files (id, problem, answer) and hub rows (Problem/Answer, problem/answer) to one shape.
    AMC answers are floats in the file ("27.0"): written as plain numbers."""
    out = []
    for i, r in enumerate(records):
        problem = r.get("problem") or r.get("Problem") or r.get("question") or ""
        answer = r.get("answer", r.get("Answer", ""))
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        out.append({"id": str(r.get("id", r.get("ID", i))), "problem": problem, "answer": str(answer)})
    return out


MATH_COMPETITION = GenerativeSpec(
    dataset_id="math_competition",
    source=DataSource(name="test", local_files=("amc23_test.jsonl",), normalize=_competition_records),
    template="Problem:\n{problem}\n" + BOXED_INSTRUCTION + "\n\nSolution:",
    target=lambda r: r["answer"],
    stop=("Problem:", "</s>", "<|im_end|>"),
    max_tokens=1024,
    metrics=(("math_verify_accuracy", extract_math_answer),),
    normalize=_identity,
    compare=math_equal,
)

AIME = GenerativeSpec(
    dataset_id="aime",
    source=DataSource(name="test", local_files=("aime24_test.jsonl",), normalize=_competition_records),
    variants={"aime25": DataSource(name="test", local_files=("aime25_test.jsonl",), normalize=_competition_records)},
    template="Problem:\n{problem}\n" + BOXED_INSTRUCTION + "\n\nSolution:",
    target=lambda r: r["answer"],
    stop=("Problem:", "</s>", "<|im_end|>"),
    max_tokens=1536,
    metrics=(("math_verify_accuracy", extract_math_answer),),
    normalize=normalize_integer,  # AIME answers are integers 0-999: "033" = "33", "$204$" = "204"
)

# -- mathqa --------------------------------------------------------------------------

_MATHQA_OPTION = re.compile(r"[abcd] \) .*?, |e \) .*?$")


def mathqa_options(options: str) -> list[str]:
    """lm-eval's math_qa doc_to_choice: "a ) 12 , b ) 16 , ..." -> ["12", "16", ...]."""
    return [c[4:].rstrip(" ,") for c in _MATHQA_OPTION.findall(options)]


def _mathqa_check(r: Record) -> str | None:
    n = len(mathqa_options(r["options"]))
    if n < 2:
        return "has options that do not read as 'a ) ... , b ) ...'"
    return None if r["correct"] in "abcde"[:n] else f"has correct {r['correct']!r}, not one of its {n} options"


@record_shape({"id": Text, "problem": Text, "options": Text, "correct": Text}, _mathqa_check)
def _mathqa_records(records: list[Record], origin: str) -> list[Record]:
    """allenai/math_qa rows (Problem, options, correct a-e; the local copy has `problem`) to one shape."""
    out = []
    for i, r in enumerate(records):
        out.append(
            {
                "id": str(i),
                "problem": r.get("Problem", r.get("problem", "")),
                "options": r["options"],
                "correct": r["correct"].strip(),
            }
        )
    return out


MATHQA = MultipleChoiceSpec(
    dataset_id="mathqa",
    source=DataSource(name="test", local_files=("mathqa_test_1000.jsonl",), normalize=_mathqa_records),
    fewshot_source=None,  # lm-eval: train split; offline there is only the test sample: never the item itself
    text=lambda r: f"Question: {r['problem']}\nAnswer:",
    choices=lambda r: mathqa_options(r["options"]),
    gold=lambda r: "abcde".index(r["correct"]),
    labels=lambda r: list("abcde")[: len(mathqa_options(r["options"]))],
    question=lambda r: r["problem"],
    options=lambda r: mathqa_options(r["options"]),
)
