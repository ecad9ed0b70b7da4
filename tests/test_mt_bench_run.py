"""MT-Bench run end to end through `evalmap run` / `evaluate`, the model and its judge each played by a real
(fake, in-process) OpenAI-compatible server on 127.0.0.1 with scripted answers.

What the runner and executor add to the task (tests/tasks/test_mt_bench.py drives the task alone): the judge
gets only judgments and the model only its turns, the judge's identity is stored with the scores, a rerun
costs no call, pairwise mode finds the opponent's stored answers by run id or model id, and a run killed
with SIGKILL while the judge is at work resumes to the scores of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evalmap
from evalmap.errors import EvalmapError

BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from fake_openai_server import FakeOpenAIServer  # noqa: E402

CLI = [sys.executable, "-c", "from evalmap.cli import main; main()"]
JUDGE = "qwen25_7b"  # any catalog model: the judge server says what it is


def is_judging(messages) -> bool:
    return any("impartial judge" in m["content"] for m in messages)


def judge_reply(messages):
    """A deterministic judge: a rating from the length of what it was shown (1-10), with its reasoning;
    on pairwise prompts it prefers the assistant whose answer says "better"."""
    if not is_judging(messages):
        return None
    prompt = messages[-1]["content"]
    if "Assistant B" in prompt:  # a pairwise prompt (the single multi-turn one names only Assistant A)
        a = prompt.split("The Start of Assistant A's")[-1].split("The End of Assistant A's")[0]  # A's answer(s)
        return "Assistant A is better. [[A]]" if "better" in a else "Assistant B is better. [[B]]"
    return f"The answer is on topic. Rating: [[{len(prompt) % 10 + 1}]]"


def better_answers(messages):
    """A second model: every answer says it is better."""
    return None if is_judging(messages) else f"A better answer to: {messages[-1]['content'][:40]}"


def run(model_server, judge_server, store, data, samples=6, **options):
    return evalmap.evaluate(
        "smollm2_135m", "mt_bench", samples, "openai", base_url=model_server.base_url, judge=JUDGE,
        judge_base_url=judge_server.base_url, store=store, quiet=True, data_dir=str(data), max_retries=1,
        **options,
    )


def test_the_judge_gets_the_judgments_and_a_rerun_costs_nothing(tmp_path, shared_data):
    store = tmp_path / "s.sqlite"
    with FakeOpenAIServer(latency_s=0.01) as model_server, \
            FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as judge_server:
        result = run(model_server, judge_server, store, shared_data)
        assert model_server.requests == 12 and judge_server.requests == 12  # 6 questions x 2 turns, each judged
        (job,) = result.jobs
        assert job.model_calls == 12 and job.judge["calls"] == 12 and job.judge["self"] is False
        assert job.judge["model"] == JUDGE and job.judge["engine"] == "openai" and len(job.judge["prompt_hash"]) == 64
        expected = [t["rating"] for s in result.samples() for t in s["details"]["turns"]]
        assert job.headline == "judge_score" and job.headline_score.n == 12
        assert job.headline_score.value == pytest.approx(sum(expected) / 12)
        assert dict(result.to_dict()["jobs"][0]["judge"]) == job.judge

        model_server.reset_stats()
        judge_server.reset_stats()
        again = run(model_server, judge_server, tmp_path / "other.sqlite", shared_data)
        assert model_server.requests == 12 and judge_server.requests == 12  # another store: asked again
        model_server.reset_stats()
        judge_server.reset_stats()
        cached = run(model_server, judge_server, store, shared_data)
        assert model_server.requests == 0 and judge_server.requests == 0
    assert cached.jobs[0].headline_score == job.headline_score == again.jobs[0].headline_score


def test_pairwise_against_a_stored_run_and_a_model(tmp_path, shared_data):
    store = tmp_path / "s.sqlite"
    with FakeOpenAIServer(latency_s=0.01) as plain, FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as judge:
        opponent = run(plain, judge, store, shared_data)
    with FakeOpenAIServer(latency_s=0.01, chat_reply=better_answers) as better, \
            FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as judge:
        # a model id means its newest stored answers from another run: here the opponent's
        by_model = run(better, judge, store, shared_data, pairwise_against="smollm2_135m")
        assert judge.requests == 24  # both positions of every turn of 6 questions
        by_run = run(better, judge, store, shared_data, pairwise_against=opponent.run_id)
    for result in (by_run, by_model):
        (job,) = result.jobs
        named = {s.name: s for s in job.scores}
        assert job.headline == "win_rate_adjusted" and named["win_rate_adjusted"].value == 1.0
        assert named["wins"].value == 12 and named["losses"].value == 0 and named["judge_failures"].value == 0
        assert job.judge["pairwise_against"] in (opponent.run_id, "smollm2_135m")
    sample = by_run.samples()[0]
    assert sample["details"]["opponent_answers"] == next(
        s["details"]["answers"] for s in opponent.samples() if s["item_id"] == sample["item_id"])


def test_pairwise_without_stored_answers_is_one_sentence_before_any_call(tmp_path, shared_data):
    with FakeOpenAIServer(latency_s=0.01) as model_server, FakeOpenAIServer(latency_s=0.01) as judge_server:
        with pytest.raises(EvalmapError, match=r"names no stored mt_bench answers.*evalmap run --models") as err:
            run(model_server, judge_server, tmp_path / "s.sqlite", shared_data, pairwise_against="qwen3_8b")
        assert model_server.requests == 0 and judge_server.requests == 0
    assert "\n" not in str(err.value)


def test_judge_engine_options_need_a_judge_model(tmp_path, shared_data):
    with pytest.raises(EvalmapError, match=r"--judge-base-url choose the judge's engine; name the judge model"):
        evalmap.evaluate("smollm2_135m", "mt_bench", 2, judge_base_url="http://127.0.0.1:9/v1",
                         store=tmp_path / "s.sqlite", quiet=True, data_dir=str(shared_data))


def test_kill_9_while_the_judge_works_resumes_to_the_same_scores(tmp_path, shared_data):
    """SIGKILL once the judge has given a few verdicts; the same command again asks the model for nothing it
    answered and ends with the samples and scores of an uninterrupted run."""
    env = {**os.environ, "EVALMAP_HOME": str(tmp_path / "home")}
    n = 10
    with FakeOpenAIServer(latency_s=0.01) as model_server, \
            FakeOpenAIServer(latency_s=0.4, chat_reply=judge_reply) as judge_server:
        args = [*CLI, "run", "--models", "smollm2_135m", "--datasets", "mt_bench", "--samples", str(n),
                "--backend", "openai", "--base-url", model_server.base_url, "--judge-model", JUDGE,
                "--judge-base-url", judge_server.base_url, "--concurrency", "2", "--data-dir", str(shared_data),
                "--quiet"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and judge_server.requests < 5:
            time.sleep(0.05)
        assert proc.poll() is None and 0 < judge_server.requests < 2 * n, "the run ended before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        resumed = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        # answers and verdicts are cached as they arrive: at most those in flight at the kill (2 each) are asked twice
        assert model_server.requests <= 2 * n + 2 and judge_server.requests <= 2 * n + 2
        assert "judged by qwen25_7b on openai" in resumed.stdout
    with sqlite3.connect(tmp_path / "home" / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    resumed_run = evalmap.load_run("latest", store=tmp_path / "home" / "store.sqlite")
    with FakeOpenAIServer(latency_s=0.01) as clean_model, \
            FakeOpenAIServer(latency_s=0.01, chat_reply=judge_reply) as clean_judge:
        reference = run(clean_model, clean_judge, tmp_path / "clean.sqlite", shared_data, samples=n)
    assert [s.to_dict() for s in resumed_run.jobs[0].scores] == [s.to_dict() for s in reference.jobs[0].scores]
    strip = ("latency_s",)
    assert [{k: v for k, v in s.items() if k not in strip} for s in resumed_run.samples()] == \
        [{k: v for k, v in s.items() if k not in strip} for s in reference.samples()]


def test_smollm2_judges_smollm2_end_to_end(tmp_path, shared_data, embedded_on_llamacpp):
    """A real model answers both turns and grades them (a weak judge, but the whole path is real): the run
    says the model judges itself, every judgment is either a rating or a counted failure, and the judge's
    reasoning is stored next to each answer."""
    from evalmap.executors.local import Reporter

    messages = []

    class Recorder(Reporter):
        def message(self, text):
            messages.append(text)

    result = evalmap.evaluate("smollm2_135m", "mt_bench", 1, "llamacpp", store=tmp_path / "s.sqlite",
                              data_dir=str(shared_data), max_tokens=24, reporter=Recorder())
    assert any("judged by each model itself" in m for m in messages)
    (job,) = result.jobs
    assert job.n == 1 and job.model_calls == 2 and job.judge["calls"] == 2 and job.judge["self"] is True
    named = {s.name: s for s in job.scores}
    (sample,) = result.samples()
    turns = sample["details"]["turns"]
    assert [t["turn"] for t in turns] == [1, 2] and all(t["judgment"] for t in turns)
    assert all((t["rating"] is None) == (t["failure"] is not None) for t in turns)
    assert named["judge_failures"].value == sum(t["rating"] is None for t in turns)
    assert named["judge_score"].n == sum(t["rating"] is not None for t in turns)
