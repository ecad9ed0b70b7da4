"""Prompts against lm-evaluation-harness's exact formats, item subsets, prompt hashes."""

import pytest

from evalmap.backends.base import GenerationRequest, LoglikelihoodRequest
from evalmap.errors import EvalmapError

GSM8K_0 = (
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per "
    "fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)

GSM8K_COT_8SHOT_PREFIX = (
    "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
    "done, there will be 21 trees. How many trees did the grove workers plant today?\n"
    "A: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
    "have been 21 - 15 = 6. The answer is 6.\n\n"
    "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\n"
    "A: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.\n\n"
    "Q: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in "
    "total?\n"
    "A: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After "
    "eating 35, they had 74 - 35 = 39. The answer is 39.\n\n"
    "Q: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops "
    "did Jason give to Denny?\n"
    "A: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 "
    "= 8. The answer is 8.\n\n"
    "Q: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he "
    "have now?\n"
    "A: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. "
    "5 + 4 = 9. The answer is 9.\n\n"
    "Q: There were nine computers in the server room. Five more computers were installed each day, from "
    "monday to thursday. How many computers are now in the server room?\n"
    "A: There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
    "computers were added. 9 + 20 is 29. The answer is 29.\n\n"
    "Q: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many "
    "golf balls did he have at the end of wednesday?\n"
    "A: Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 "
    "more, he had 35 - 2 = 33 golf balls. The answer is 33.\n\n"
    "Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\n"
    "A: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
    "dollars left. 23 - 15 is 8. The answer is 8.\n\n"
)


def _first(task, item_id):
    return next(it for it in task.items() if it.id == item_id)


# -- gsm8k ---------------------------------------------------------------------------


def test_gsm8k_cot_8shot_prompt(make_task):
    task = make_task("gsm8k")
    item = task.items()[0]
    (req,) = task.requests(item)
    assert isinstance(req, GenerationRequest) and not req.chat
    assert req.prompt == GSM8K_COT_8SHOT_PREFIX + "Q: " + GSM8K_0 + "\nA:"
    assert req.stop == ("Q:", "</s>", "<|im_end|>", "\n\n\n")
    assert req.max_tokens == 256 and req.temperature == 0.0


def test_gsm8k_zero_shot_and_two_shot(make_task):
    item = make_task("gsm8k").items()[0]
    assert make_task("gsm8k", num_fewshot=0).requests(item)[0].prompt == "Q: " + GSM8K_0 + "\nA:"
    two = make_task("gsm8k", num_fewshot=2).requests(item)[0].prompt
    assert two.startswith("Q: There are 15 trees in the grove.")
    assert two.count("Q: ") == 3 and two.endswith("?\nA:")
    with pytest.raises(EvalmapError, match="between 0 and 8"):
        make_task("gsm8k", num_fewshot=9)


def test_gsm8k_chat_is_multiturn_fewshot(make_task):
    task = make_task("gsm8k", num_fewshot=2, chat=True)
    (req,) = task.requests(task.items()[0])
    assert req.chat and req.prompt == ""
    assert req.messages == (
        (
            "user",
            "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they "
            "are done, there will be 21 trees. How many trees did the grove workers plant today?\nA:",
        ),
        (
            "assistant",
            "There are 15 trees originally. Then there were 21 trees after some more were planted. So there "
            "must have been 21 - 15 = 6. The answer is 6.",
        ),
        (
            "user",
            "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the "
            "parking lot?\nA:",
        ),
        ("assistant", "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
        ("user", "Q: " + GSM8K_0 + "\nA:"),
    )
    assert req.chat_messages()[0]["role"] == "user"


def test_n_samples_give_distinct_requests(make_task):
    task = make_task("gsm8k", n_samples=3, temperature=0.8)
    reqs = task.requests(task.items()[0])
    assert len(reqs) == 3 and len({r.key() for r in reqs}) == 3


# -- arc_challenge -------------------------------------------------------------------


def test_arc_prompt(make_task):
    task = make_task("arc_challenge")
    reqs = task.requests(_first(task, "Mercury_7175875"))
    context = (
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the "
        "most likely effect of this increase in rotation?\nAnswer:"
    )
    assert reqs == [
        LoglikelihoodRequest(context, " Planetary density will decrease."),
        LoglikelihoodRequest(context, " Planetary years will become longer."),
        LoglikelihoodRequest(context, " Planetary days will become shorter."),
        LoglikelihoodRequest(context, " Planetary gravity will become stronger."),
    ]


def test_arc_fewshot_from_dev_deterministic(make_task, data_dir, get_dataset):
    from evalmap.tasks.data import load_records
    from evalmap.tasks.specs.reasoning import ARC_CHALLENGE

    task = make_task("arc_challenge", num_fewshot=2)
    item = _first(task, "Mercury_7175875")
    shots = task.exemplars(item)
    dev_ids = {r["id"] for r in load_records(get_dataset("arc_challenge"), data_dir, ARC_CHALLENGE.fewshot_source)}
    assert len(shots) == 2 and {s["id"] for s in shots} <= dev_ids
    ctx = task.requests(item)[0].context
    a, b = shots
    assert ctx == (
        f"Question: {a['question']}\nAnswer: {a['choices']['text'][ARC_CHALLENGE.gold(a)]}\n\n"
        f"Question: {b['question']}\nAnswer: {b['choices']['text'][ARC_CHALLENGE.gold(b)]}\n\n"
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the "
        "most likely effect of this increase in rotation?\nAnswer:"
    )
    again = make_task("arc_challenge", num_fewshot=2)
    assert again.requests(_first(again, "Mercury_7175875"))[0].context == ctx
    other_seed = make_task("arc_challenge", num_fewshot=2, seed=7)
    assert other_seed.exemplars(item) != shots


# -- hellaswag -----------------------------------------------------------------------


def test_hellaswag_prompt(make_task):
    task = make_task("hellaswag")
    item = task.items()[0]
    assert item.id == "0"
    reqs = task.requests(item)
    ctx = "Roof shingle removal: A man is sitting on a roof. he"
    assert reqs == [
        LoglikelihoodRequest(ctx, " is using wrap to wrap a pair of skis."),
        LoglikelihoodRequest(ctx, " is ripping level tiles off."),
        LoglikelihoodRequest(ctx, " is holding a rubik's cube."),
        LoglikelihoodRequest(ctx, " starts pulling up roofing on a roof."),
    ]


def test_hellaswag_fewshot_never_uses_the_item(make_task):
    task = make_task("hellaswag", num_fewshot=3)
    item = task.items(limit=1, seed=3)[0]
    shots = task.exemplars(item)
    assert len(shots) == 3 and item.id not in {s["id"] for s in shots}
    ctx = task.requests(item)[0].context
    assert ctx.startswith(f"{shots[0]['query']} {shots[0]['endings'][shots[0]['label']]}\n\n")
    assert ctx.endswith("\n\n" + item.data["query"])


# -- mmlu ----------------------------------------------------------------------------


def test_mmlu_prompt(make_task):
    task = make_task("mmlu")
    reqs = task.requests(_first(task, "abstract_algebra/0"))
    context = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
    )
    assert [r.context for r in reqs] == [context] * 4
    assert [r.continuation for r in reqs] == [" A", " B", " C", " D"]


def test_mmlu_5shot_from_same_subject_dev_in_order(make_task):
    task = make_task("mmlu", num_fewshot=5)
    ctx = task.requests(_first(task, "abstract_algebra/0"))[0].context
    assert ctx.startswith(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K "
        "are subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\n"
        "D. False, True\nAnswer: B\n\n"
        "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The "
        "symmetric group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\n"
        "D. False, True\nAnswer: C\n\n"
    )
    assert ctx.endswith("over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    assert ctx.count("Answer:") == 6 and ctx.count("The following are") == 1
    anatomy = task.requests(_first(task, "anatomy/0"))[0].context
    assert anatomy.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    with pytest.raises(EvalmapError, match="only 5 few-shot exemplars"):
        t6 = make_task("mmlu", num_fewshot=6)
        t6.requests(t6.items()[0])


# -- humaneval -----------------------------------------------------------------------


def test_humaneval_completion_prompt(make_task):
    task = make_task("humaneval")
    item = task.items()[0]
    (req,) = task.requests(item)
    assert req.prompt == (
        "from typing import List\n\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
        "    given threshold.\n"
        "    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n"
        "    False\n"
        "    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n"
        "    True\n"
        '    """\n'
    )
    assert req.stop == ("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```")
    assert req.max_tokens == 512 and req.temperature == 0.0 and not req.chat
    program = task.program(item, "    return True\n")
    assert program == (
        item.data["prompt"] + "    return True\n" + "\n" + item.data["test"] + "\ncheck(has_close_elements)\n"
    )


def test_humaneval_chat_prompt_and_code_extraction(make_task):
    task = make_task("humaneval", chat=True)
    item = task.items()[0]
    (req,) = task.requests(item)
    assert req.chat and req.stop == () and len(req.messages) == 1
    role, content = req.messages[0]
    assert role == "user" and "```python\n" + item.data["prompt"] + "```" in content
    answer = (
        "Sure! Here is the completed function:\n\n```python\nfrom typing import List\n\n"
        "def has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold "
        "for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```\n\nThis compares every pair."
    )
    program = task.program(item, answer)
    assert program.startswith(item.data["prompt"] + "\nfrom typing import List\n\ndef has_close_elements(")
    assert "Sure!" not in program and "This compares" not in program
    assert program.endswith("\ncheck(has_close_elements)\n")


# -- subsets and hashes ---------------------------------------------------------------


@pytest.mark.parametrize("dataset_id", ["gsm8k", "arc_challenge", "hellaswag", "mmlu", "humaneval"])
def test_deterministic_subsets(make_task, dataset_id):
    a = [it.id for it in make_task(dataset_id).items(limit=10, seed=1)]
    b = [it.id for it in make_task(dataset_id).items(limit=10, seed=1)]
    c = [it.id for it in make_task(dataset_id).items(limit=10, seed=2)]
    assert len(a) == 10 and a == b and a != c
    assert len(make_task(dataset_id).items(limit=None)) == len(make_task(dataset_id).items(limit=10**6))


def test_prompt_hash_is_stable_and_sensitive(make_task):
    h = make_task("gsm8k").prompt_hash()
    assert h == make_task("gsm8k").prompt_hash() and len(h) == 64
    assert h != make_task("gsm8k", num_fewshot=5).prompt_hash()
    assert h != make_task("gsm8k", chat=True).prompt_hash()
    assert make_task("mmlu").prompt_hash() != make_task("mmlu", num_fewshot=5).prompt_hash()
    assert make_task("humaneval").prompt_hash() != make_task("humaneval", chat=True).prompt_hash()


@pytest.mark.parametrize(
    ("dataset", "shots"), [("arc_challenge", 25), ("hellaswag", 10), ("mmlu", 5), ("winogrande", 5)]
)
def test_standard_fewshot_counts_build_full_contexts(make_task, dataset, shots):
    """The literature's counts (docs/tasks.md) are one flag away; the default stays lm-eval's 0."""
    assert make_task(dataset).num_fewshot == 0
    task = make_task(dataset, num_fewshot=shots)
    item = task.items()[0]
    exemplars = task.exemplars(item)
    assert len(exemplars) == shots
    if task.spec.fewshot_source is None:  # drawn from the evaluation split: never the item itself
        assert all(ex["id"] != item.id for ex in exemplars)
    context = task.requests(item)[0].context
    assert context.count("\n\n") >= shots and context.startswith(
        (task.shot(exemplars[0]), "The following are multiple choice questions")
    )
