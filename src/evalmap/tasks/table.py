"""The task table: catalog dataset id -> "module:NAME" of its spec. Pure data with no imports, so the catalog
can say whether a dataset runs (`Dataset.runnable`) without depending on the tasks; `registry` builds from it."""

_SPECS = "evalmap.tasks.specs"

SPECS: dict[str, str] = {
    # coding
    "humaneval": f"{_SPECS}.coding:HUMANEVAL",
    "mbpp": f"{_SPECS}.coding:MBPP",
    "bigcodebench": f"{_SPECS}.coding:BIGCODEBENCH",
    "codecontests": f"{_SPECS}.coding:CODECONTESTS",
    "apps": f"{_SPECS}.coding:APPS",
    # mathematics
    "gsm8k": f"{_SPECS}.mathematics:GSM8K",
    "math": f"{_SPECS}.mathematics:MATH",
    "math_competition": f"{_SPECS}.mathematics:MATH_COMPETITION",
    "aime": f"{_SPECS}.mathematics:AIME",
    "mathqa": f"{_SPECS}.mathematics:MATHQA",
    # reasoning
    "arc_challenge": f"{_SPECS}.reasoning:ARC_CHALLENGE",
    "hellaswag": f"{_SPECS}.reasoning:HELLASWAG",
    "winogrande": f"{_SPECS}.reasoning:WINOGRANDE",
    # knowledge
    "mmlu": f"{_SPECS}.knowledge:MMLU",
    "truthfulqa": f"{_SPECS}.knowledge:TRUTHFULQA",
    # instruction following
    "ifeval": f"{_SPECS}.instruction_following:IFEVAL",
    "mt_bench": f"{_SPECS}.instruction_following:MT_BENCH",
    # life science
    "genomics_benchmark": f"{_SPECS}.life_science:GENOMICS_BENCHMARK",
    "protein_sequences": f"{_SPECS}.life_science:PROTEIN_SEQUENCES",
    "bioasq": f"{_SPECS}.life_science:BIOASQ",
    # function calling
    "bfcl": f"{_SPECS}.function_calling:BFCL",
    # efficiency
    "efficiency_bench": f"{_SPECS}.efficiency:EFFICIENCY_BENCH",
    "mobile_benchmark": f"{_SPECS}.efficiency:MOBILE_BENCHMARK",
    # multimodal
    "scienceqa": f"{_SPECS}.multimodal:SCIENCEQA",
    "vqa_v2": f"{_SPECS}.multimodal:VQA_V2",
    "chartqa": f"{_SPECS}.multimodal:CHARTQA",
}
