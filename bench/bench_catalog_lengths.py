"""Do the catalog's typical lengths match what the tasks render? They are what `evalmap plan` counts when a
dataset cannot be rendered on the machine (no data here, hub unreachable), so they must say what the task
would send under its default options.

    python bench/bench_catalog_lengths.py [--data-dir DIR] [--seeds 4] [--model smollm2_135m]

For every runnable catalog dataset whose data loads from --data-dir, the planner's own rendering
(`workload.plan_workloads`, default TaskConfig, no store) of --seeds seeded samples of 24 items each, pooled,
counted with the model's tokenizer; no model runs. Per dataset, in `catalog_workload`'s terms:
  prompt   tokens per request (context of a log-likelihood request, chat-templated prompt of a generation)
  answer   log-likelihood: continuation tokens per request; generation: the reference answers' length
           (few-shot answers or canonical solutions, cut at stop sequences, capped at max_tokens)
  req/item requests per item (`choices` for log-likelihood; 1 per turn for a generation)
Each mean is printed with its n (requests or answers) and ± standard error (the samples of a small dataset
overlap, so its ± is too narrow); ratio = rendered / catalog, and a row off by more than 25% is flagged.
A dataset whose default data is not here is listed as "not here", with any variant of it that is here
(its prompt is the dataset's, its items a subset).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from evalmap.catalog.loader import load_catalog
from evalmap.tasks.base import TaskConfig
from evalmap.workload import plan_workloads

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
FLAG = 0.25  # |rendered / catalog - 1| above this is flagged


@dataclass
class Mean:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else 0.0

    @property
    def stderr(self) -> float:
        return statistics.stdev(self.values) / math.sqrt(self.n) if self.n > 1 else 0.0

    def show(self) -> str:
        return f"{self.mean:.1f} ±{self.stderr:.1f} (n={self.n})" if self.values else "-"


@dataclass
class Rendered:
    kind: str  # the rendered requests' kind: "loglikelihood" | "generate"
    prompt: Mean
    answer: Mean  # continuations (log-likelihood) or reference answers (generation); empty: none to read
    per_item: float
    items: int
    tokens: str


def suggest(value: float) -> int:
    """The value rounded to 2 significant figures (at least 1): what the catalog should say."""
    if value < 10:
        return max(1, round(value))
    digits = 10 ** (int(math.log10(value)) - 1)
    return int(round(value / digits) * digits)


def render(catalog, dataset_id: str, model: str, data_dir: Path, seeds: list[int],
           variant: str | None = None) -> Rendered | str:
    """The pooled rendering of `seeds` samples, or why the dataset could not be rendered here."""
    config = TaskConfig(data_dir=str(data_dir), variant=variant)
    prompts, answers, requests, items, kind, how = [], [], 0, 0, "", ""
    for seed in seeds:
        workloads, notes = plan_workloads(catalog, [(model, dataset_id, None)], config, seed)
        work = workloads.get((model, dataset_id))
        if work is None:
            return notes[0].split("(", 1)[-1].rstrip(")") if notes else "not rendered"
        if not work.requests:
            return "sends no requests (it times the engine itself)"
        kind = work.requests[0].kind
        how = work.tokens
        prompts += [r.prompt for r in work.requests]
        requests += len(work.requests)
        items += work.sampled
        if kind == "loglikelihood":
            answers += [r.continuation for r in work.requests]
        elif work.lengths is not None and "catalog" not in work.lengths.source:
            answers += list(work.lengths.values)
    return Rendered(kind, Mean(prompts), Mean(answers), requests / items if items else 0.0, items, how)


def _ratio(rendered: float, catalog: float | None) -> tuple[str, bool]:
    if not catalog or not rendered:
        return "   -  ", False
    ratio = rendered / catalog
    return f"{ratio:6.2f}", abs(ratio - 1) > FLAG


def row(name: str, dataset, got: Rendered) -> tuple[str, bool]:
    p_ratio, p_off = _ratio(got.prompt.mean, dataset.prompt_tokens)
    a_ratio, a_off = _ratio(got.answer.mean, dataset.answer_tokens) if got.answer.values else ("   -  ", False)
    choices = dataset.choices or (4 if got.kind == "loglikelihood" else 1)  # catalog_workload's default
    c_ratio, c_off = _ratio(got.per_item, choices)
    off = p_off or a_off or c_off
    answer = got.answer.show() if got.answer.values else "- (catalog's own)"
    line = (f"{name:<24}{dataset.request_kind:<14}{dataset.prompt_tokens:>6} {got.prompt.show():>24}{p_ratio:>7}"
            f"{dataset.answer_tokens:>6} {answer:>24}{a_ratio:>7}{choices:>5} {got.per_item:>5.2f}{c_ratio:>7}  "
            f"{'OFF' if off else 'ok':<4}"
            f"prompt={suggest(got.prompt.mean)}"
            + (f" answer={suggest(got.answer.mean)}" if got.answer.values else "")
            + (f" choices={round(got.per_item)}" if got.kind == "loglikelihood" else ""))
    return line, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, default=4, help="seeded samples of 24 items pooled per dataset")
    parser.add_argument("--model", default="smollm2_135m", help="whose tokenizer counts (the catalog's is SmolLM2's)")
    parser.add_argument("--verbose", action="store_true", help="say why each dataset not here could not load")
    args = parser.parse_args()
    catalog = load_catalog()
    seeds = [1234 + i for i in range(args.seeds)]
    start = time.perf_counter()
    print(f"catalog vs rendered under default options, {args.model}'s tokens, {args.seeds} samples of 24 items "
          f"pooled per dataset, data from {args.data_dir}; flagged: off by more than {FLAG:.0%}")
    print(f"{'':<38}{'prompt tokens per request':^38}{'answer tokens':^38}{'requests per item':^23}")
    print(f"{'dataset':<24}{'kind':<14}" + f"{'cat.':>6} {'rendered':>24}{'ratio':>7}" * 2
          + f"{'cat.':>5} {'rend.':>5}{'ratio':>7}  verdict, suggested")
    flagged, how, absent, reasons = [], set(), [], []
    for dataset in catalog.datasets.values():
        if not dataset.runnable:
            absent.append(f"{dataset.id} (no task)")
            continue
        got = render(catalog, dataset.id, args.model, args.data_dir, seeds)
        if isinstance(got, str):
            absent.append(f"{dataset.id} (not here)")
            reasons.append(f"{dataset.id}: {got}")
            for variant in dataset.variants:
                found = render(catalog, dataset.id, args.model, args.data_dir, seeds, variant.name)
                if isinstance(found, Rendered):
                    line, _ = row(f"{dataset.id} [{variant.name}] *", dataset, found)
                    print(line)
            continue
        how.add(got.tokens)
        line, off = row(dataset.id, dataset, got)
        print(line)
        flagged += [dataset.id] if off else []
    print("* a variant (the default's data is not here): its items are a subset, its prompt the dataset's")
    print(f"tokens counted with: {'; '.join(sorted(how))}")
    print(f"not rendered: {', '.join(absent)}")
    if args.verbose:
        print("\n".join(reasons))
    print(f"{len(flagged)} flagged: {', '.join(flagged) or 'none'}; {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
