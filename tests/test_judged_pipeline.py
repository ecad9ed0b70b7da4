"""The pipeline's conversations and judges, on two real (fake, in-process) OpenAI-compatible servers.

A small two-turn task stands in for MT-Bench so the runner's part is checked on its own: the second
turn carries the model's own first answer, judge requests reach only the judge's server, judge calls
are counted apart from model calls, a rerun costs no call at all, and a run killed by a failing judge
resumes by asking only the judge again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from evalmap.backends import BackendOptions, open_backend
from evalmap.backends.base import GenerationRequest
from evalmap.catalog.loader import load_catalog
from evalmap.metrics.stats import mean_score
from evalmap.runner import Job, run_model
from evalmap.store import Store
from evalmap.tasks.base import Item, JudgeRequest, SampleResult, TaskConfig

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from fake_openai_server import FakeOpenAIServer  # noqa: E402

JUDGE_SYSTEM = "You grade answers."


@dataclass
class TwoTurns:
    """Ask q1, then q2 with the model's answer to q1 in the conversation; the judge rates each turn."""

    dataset_id: str = "two_turns"
    config: TaskConfig = field(default_factory=TaskConfig)
    judged = True

    def items(self, limit=None, seed=1234):
        return [Item(str(i), {"q1": f"question {i}", "q2": f"follow-up {i}"}) for i in range(limit or 6)]

    def requests(self, item):
        return [GenerationRequest(messages=(("user", item.data["q1"]),), chat=True, max_tokens=12)]

    def follow_up(self, item, responses):
        texts = [r.text for r in responses]
        if len(texts) == 1:
            turn2 = (("user", item.data["q1"]), ("assistant", texts[0]), ("user", item.data["q2"]))
            return [GenerationRequest(messages=turn2, chat=True, max_tokens=12), self._judge(texts[0])]
        if len(texts) == 3:
            return [self._judge(texts[1])]
        return []

    def _judge(self, answer):
        return JudgeRequest(messages=(("system", JUDGE_SYSTEM), ("user", f"Rate: {answer}")), chat=True, max_tokens=8)

    def score(self, item, responses):
        ratings = [float(responses[i].text.strip("[] ")) for i in (2, 3)]
        return SampleResult({"rating": sum(ratings) / 2}, details={"answers": [responses[0].text, responses[1].text]})

    def aggregate(self, samples):
        return [mean_score("rating", [s.metrics["rating"] for s in samples])]

    def prompt_hash(self):
        return "toy"


def judge_reply(messages):
    """The judge rates every answer [[7]]; the model's server gets the hashed default answer."""
    return "[[7]]" if messages[0]["content"] == JUDGE_SYSTEM else None


def backend(server):
    return open_backend(load_catalog().model("smollm2_135m"), BackendOptions(backend="openai", base_url=server.base_url,
                                                                              max_retries=1, timeout_s=5.0))


def run(store, model_server, judge_server, task, n=6):
    model, judge = backend(model_server), backend(judge_server)
    try:
        run_id, _ = store.open_run("k", {}, 1234, "test", {})
        items = task.items(n)
        job_id = store.open_job(run_id, "smollm2_135m", task.dataset_id, {}, {}, "toy", len(items),
                                judge={"model": "judge", "engine": "openai"})
        try:
            return run_model(model, [Job(job_id, task, items)], store, "smollm2_135m", judge=judge)
        finally:
            store.finish_run(run_id, "interrupted", 0.0)  # the same call again resumes this run
    finally:
        model.close()
        judge.close()


def test_second_turn_carries_the_first_answer_and_judges_go_to_the_judge(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    seen = []  # every conversation the model's server was asked to continue
    with FakeOpenAIServer(latency_s=0.01, chat_reply=lambda m: seen.append(m)) as model_server, \
            FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as judge_server:
        (result,) = run(store, model_server, judge_server, TwoTurns())
        assert model_server.requests == 12 and judge_server.requests == 12  # 2 turns, 2 judgments per item
    assert result.n == 6 and result.scores[0].value == 7.0
    assert result.model_calls == 12 and result.judge["calls"] == 12 and result.judge["tokens"] > 0
    assert result.judge["model"] == "judge"
    samples = store.samples(result.job_id)
    # the stored output is every answer in the order asked: turn 1, turn 2, judge 1, judge 2
    assert all(s["output"][2:] == ["[[7]]", "[[7]]"] for s in samples)
    assert not any(m[0]["content"] == JUDGE_SYSTEM for m in seen)
    second_turns = {m[-1]["content"]: m[1]["content"] for m in seen if len(m) == 3}
    assert second_turns == {f"follow-up {s['item_id']}": s["output"][0] for s in samples}


def test_a_rerun_of_a_judged_conversation_costs_no_call(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with FakeOpenAIServer(latency_s=0.01) as model_server, \
            FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as judge_server:
        run(store, model_server, judge_server, TwoTurns())
        model_server.reset_stats()
        judge_server.reset_stats()
        store.db.execute("DELETE FROM samples")  # forget the scores: only the response cache is left
        (again,) = run(store, model_server, judge_server, TwoTurns())
        assert model_server.requests == 0 and judge_server.requests == 0
    assert again.n == 6 and again.scores[0].value == 7.0


def test_a_failing_judge_fails_its_items_and_a_rerun_asks_only_the_judge(tmp_path):
    """The judge fails every second-turn judgment of item 2: that item is counted failed (not scored); a
    rerun against a healthy judge asks the judge once and the model not at all."""
    store = Store(tmp_path / "s.sqlite")
    with FakeOpenAIServer(latency_s=0.01) as model_server:
        task = TwoTurns()
        with FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as probe:
            (clean,) = run(Store(tmp_path / "probe.sqlite"), model_server, probe, task)
        doomed_answer = Store(tmp_path / "probe.sqlite").samples(clean.job_id)[2]["output"][1]
        model_server.reset_stats()
        with FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply,
                              fail_prompts={f"Rate: {doomed_answer}"}) as judge_server:
            (first,) = run(store, model_server, judge_server, task)
            port = judge_server.port
        assert first.n == 5 and first.failed == 1 and "HTTP 500" in first.failure
        model_server.reset_stats()
        with FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply, port=port) as judge_server:  # healthy again
            (second,) = run(store, model_server, judge_server, task)
            assert judge_server.requests == 1 and model_server.requests == 0
    assert second.n == 6 and second.failed == 0 and second.scores[0].value == 7.0
