"""Instruction-following datasets (catalog task type `instruction_following`), as data for their kinds.

ifeval follows lm-evaluation-harness's `ifeval` (Google's instruction_following_eval): each of the
541 prompts is sent zero-shot (with the chat template unless --no-chat), greedy, up to 1280 new
tokens and no stop sequence; the answer is checked by the rule of each of its instructions
(`tasks.kinds.instructions`), strict and loose, at prompt and at instruction level.
"""

from __future__ import annotations

from evalmap.tasks.data import DataSource, Record, Text, record_shape
from evalmap.tasks.kinds.instructions import InstructionSpec, build_instructions
from evalmap.tasks.kinds.judge import JudgeSpec

# -- ifeval --------------------------------------------------------------------------


@record_shape({"id": Text, "prompt": Text, "instruction_id_list": list[str], "kwargs": list})
def _ifeval_records(records: list[Record], origin: str) -> list[Record]:
    """Google's records (key, prompt, instruction_id_list, kwargs), each with its instructions built once."""
    return [
        {
            "id": str(r["key"]),
            "prompt": r["prompt"],
            "instruction_id_list": r["instruction_id_list"],
            "kwargs": r["kwargs"],
            "instructions": build_instructions(str(r["key"]), r["instruction_id_list"], r["kwargs"]),
        }
        for r in records
    ]


IFEVAL = InstructionSpec(
    dataset_id="ifeval",
    source=DataSource(name="train", local_files=("input_data.jsonl",), normalize=_ifeval_records),
)


# -- mt_bench ------------------------------------------------------------------------
# MT-Bench as FastChat's llm_judge scores it (tasks.kinds.judge; docs/mt_bench.md): two turns, the
# second asked with the model's own first answer; FastChat's judge templates; GPT-4's reference
# answers shown to the judge for math, reasoning and coding (or PR 3158's corrected ones).

# FastChat PR 3158: the GPT-4 reference answers of these questions are wrong in at least one turn.
MT_BENCH_WRONG_GPT4_REFERENCES = frozenset(
    {"104", "105", "109", "111", "113", "114", "120", "122", "124", "125", "126", "128", "130"}
)


def _two_turns(record: Record) -> str | None:
    if len(record["turns"]) != 2 or not all(turn.strip() for turn in record["turns"]):
        return "does not have 2 non-empty turns"
    return None


@record_shape({"id": Text, "category": Text, "turns": list[str], "reference": list[str]}, _two_turns)
def _mt_bench_records(records: list[Record], origin: str) -> list[Record]:
    """FastChat's question records (question_id, category, turns) joined with the reference answers
    read beside them (reference_answer/<model>.jsonl: question_id, choices[0].turns). A question's own
    `reference` field is not what FastChat's judge sees, so it is not read."""
    refs = {r["question_id"]: r["choices"][0]["turns"] for r in records if "choices" in r}
    return [
        {
            "id": str(r["question_id"]),
            "category": r["category"],
            "turns": r["turns"],
            "reference": refs.get(r["question_id"], []),
        }
        for r in records
        if "choices" not in r
    ]


@record_shape({"name": Text, "system_prompt": str, "prompt_template": Text, "output_format": Text})
def _judge_prompt_records(records: list[Record], origin: str) -> list[Record]:
    """FastChat's judge_prompts.jsonl: one template per line (name, system_prompt, prompt_template, ...)."""
    keys = ("name", "type", "system_prompt", "prompt_template", "output_format")
    return [{k: r[k] for k in keys if k in r} for r in records]


MT_BENCH = JudgeSpec(
    dataset_id="mt_bench",
    source=DataSource(
        name="questions",
        local_files=("question.jsonl", "reference_answer_gpt-4.jsonl"),
        normalize=_mt_bench_records,
    ),
    judge_source=DataSource(
        name="judge prompts", local_files=("judge_prompts.jsonl",), normalize=_judge_prompt_records
    ),
    single_templates=("single-v1", "single-v1-multi-turn"),
    single_ref_templates=("single-math-v1", "single-math-v1-multi-turn"),
    pair_templates=("pair-v2", "pair-v2-multi-turn"),
    pair_ref_templates=("pair-math-v1", "pair-math-v1-multi-turn"),
    reference_categories=frozenset({"math", "reasoning", "coding"}),  # FastChat's NEED_REF_CATS
    categories=("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"),
    temperatures={  # FastChat's temperature_config (answers; the judge is always greedy)
        "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
        "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
    },  # fmt: skip
    variants={
        # FastChat PR 3158: gpt-4-0125-preview answers, checked by hand and regenerated until correct
        "corrected_references": DataSource(
            name="questions",
            local_files=("question.jsonl", "reference_answer_gpt-4-0125-preview.jsonl"),
            normalize=_mt_bench_records,
        ),
    },
    flagged_references={"default": MT_BENCH_WRONG_GPT4_REFERENCES},
    local_only=(
        "the hub copy (HuggingFaceH4/mt_bench_prompts) has no judge templates, no GPT-4 reference answers and "
        "no question ids, so it cannot stand in: put FastChat's question.jsonl, reference_answer_gpt-4.jsonl and "
        "judge_prompts.jsonl (and, for --variant corrected_references, PR 3158's "
        "reference_answer_gpt-4-0125-preview.jsonl; docs/mt_bench.md says where each comes from) in "
        "<data-dir>/mt_bench/ and pass --data-dir."
    ),
)
