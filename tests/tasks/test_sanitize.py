"""BigCodeBench's sanitizer, rebuilt on ast: each rule on a program small enough to check by eye."""

from __future__ import annotations

import itertools
import random

from evalmap.backends.base import Generation
from evalmap.tasks.sanitize import _parses, calibrated, longest_valid_chunk, sanitize

PROMPT = 'import os\nLIMIT = 3\n\ndef task_func(x):\n    """Doc."""\n'


def test_truncated_tail_is_dropped_and_the_body_kept():
    completion = (
        "    return helper(x) + LIMIT\n\ndef helper(y):\n    return y * 2\n\ndef unused(z):\n    return [z for z in ("
    )
    assert sanitize(PROMPT + "\n" + completion, "task_func") == (
        'import os\nLIMIT = 3\ndef task_func(x):\n    """Doc."""\n\n    return helper(x) + LIMIT\n'
        "def helper(y):\n    return y * 2"
    )


def test_example_calls_prints_and_main_blocks_go_imports_stay():
    code = (
        "import math\ndef task_func(n):\n    return math.sqrt(n)\n\nprint(task_func(4))\nresult = 3\n"
        "if __name__ == '__main__':\n    task_func(9)\nimport sys\n"
    )
    assert sanitize(code, "task_func") == "import math\nimport sys\ndef task_func(n):\n    return math.sqrt(n)"


def test_first_definition_wins_and_decorated_ones_are_dropped():
    code = (
        "def task_func():\n    return 1\n\ndef task_func():\n    return 2\n\n"
        "@staticmethod\ndef deco():\n    return 3\n"
    )
    assert sanitize(code, "task_func") == "def task_func():\n    return 1"
    assert sanitize("@cache\ndef task_func():\n    return 1\n", "task_func") == ""


def test_trailing_unindented_lines_naming_the_entry_point_are_cut():
    code = 'def task_func():\n    return """\ntask_func docs at column 0\n"""\n'
    assert sanitize(code, "task_func") == 'def task_func():\n    return """'


def test_longest_valid_chunk_matches_the_exhaustive_search():
    """Against BigCodeBench's O(n^2) definition on random line soups."""

    def exhaustive(text):
        lines = text.split("\n")
        best, pair = 0, (0, 0)
        for i, j in itertools.combinations(range(len(lines)), 2):
            if _parses("\n".join(lines[i : j + 1])):
                count = sum(1 for line in lines[i : j + 1] if line.strip())
                if count > best:
                    best, pair = count, (i, j)
        return "\n".join(lines[pair[0] : pair[1] + 1])

    pool = ["def f(x):", "    return x", "", "x = (", ")", "print(1)", "Here is the code:", "    y = 2", "class A:",
            "    pass", "```python", "```", "if x:", "else:", "  z = 1"]  # fmt: skip
    rng = random.Random(7)
    for _ in range(300):
        text = "\n".join(rng.choice(pool) for _ in range(rng.randint(1, 12)))
        assert longest_valid_chunk(text).rstrip("\n") == exhaustive(text).rstrip("\n"), text


def test_bigcodebench_scores_the_sanitized_calibrated_program(make_task):
    task = make_task("bigcodebench")
    item = next(it for it in task.items() if it.id == "BigCodeBench/3")
    body = item.data["canonical"][len(item.data["complete_prompt"]) :]
    cut_off = body + "\n\nif __name__ == '__main__':\n    print(task_func(['a'], [1, 2, 3]))\n\ndef extra(:\n"
    program = task.code(item, cut_off)
    assert program.startswith(calibrated(item.data["code_prompt"], "")) and "extra" not in program
    assert task.score(item, [Generation(text=cut_off)]).metrics == {"pass@1": 1.0}
    # A chat answer whose fence starts inside the body gets the prompt put back (the reference's calibration).
    chat = make_task("bigcodebench", chat=True)
    answer = "Sure:\n```python\n" + body.strip("\n") + "\n```\nDone."
    assert chat.score(item, [Generation(text=answer)]).metrics == {"pass@1": 1.0}
