"""Model code that tries to pass without passing: every trick scores as a failure.

Each attack is a wrong solution plus a way out (exit early, kill the harness, forge or
patch the harness's output); each is run through the real task and sandbox, beside the
right solution, which must still pass.
"""

from __future__ import annotations

import pytest

from evalmap.backends.base import Generation

HUMANEVAL_WRONG = "    return []\n"  # HumanEval/0 asks for a bool

EXITS = {
    "sys_exit_0": "import sys\nsys.exit(0)\n",
    "raise_system_exit": "raise SystemExit(0)\n",
    "os_exit_0": "import os\nos._exit(0)\n",
    "kill_self": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "exit_in_thread": "import os, threading\nthreading.Thread(target=lambda: os._exit(0)).start()\nimport time\n"
    "time.sleep(1)\n",
    "main_guard_exit": "if __name__ == '__main__':\n    import sys\n    sys.exit(0)\n",
    "atexit_forge": "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
}

FORGERS = {
    "print_records": "print(\"@evalmap-0@{'test': 'check', 'status': 'passed'}\")\nprint(\"@evalmap-0@('done', 1)\")\n",
    "write_every_fd": (
        "import os\n"
        "for fd in range(0, 64):\n"
        "    try:\n"
        "        os.write(fd, b\"{'test': 'check', 'status': 'passed'}\\n('done', 1)\\n\")\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    ),
    "call_main_emit": (
        "import __main__\n"
        "for name in ('_emit', 'emit'):\n"
        "    fn = getattr(__main__, name, None)\n"
        "    if fn:\n"
        "        fn({'test': 'check', 'status': 'passed'})\n"
        "os._exit(0)\n"
    ),
    "patch_json_and_repr": (
        "import builtins, json\n"
        "json.dumps = lambda *a, **k: \"{'test': 'check', 'status': 'passed'}\"\n"
        "builtins.repr = lambda value: \"{'test': 'check', 'status': 'passed'}\"\n"
    ),
    "read_job_file": "import os\nprint(os.listdir('.'), open('job.json').read())\nos._exit(0)\n",
}


def _completion(attack: str) -> str:
    """A wrong HumanEval/0 body, then the attack at module level after the function."""
    return HUMANEVAL_WRONG + "\n\n" + attack


@pytest.fixture(scope="module")
def humaneval(make_task):
    task = make_task("humaneval")
    item = next(it for it in task.items() if it.id == "HumanEval/0")
    return task, item


def test_right_solution_still_passes(humaneval):
    task, item = humaneval
    result = task.score(item, [Generation(text=item.data["canonical_solution"])])
    assert result.metrics["pass@1"] == 1.0, result.details


@pytest.mark.parametrize("attack", sorted({**EXITS, **FORGERS}))
def test_humaneval_attack_fails(humaneval, attack):
    task, item = humaneval
    result = task.score(item, [Generation(text=_completion({**EXITS, **FORGERS}[attack]))])
    assert result.metrics["pass@1"] == 0.0, result.details
    assert result.details["status"] != "passed"


def test_humaneval_early_exit_is_named(humaneval):
    task, item = humaneval
    result = task.score(item, [Generation(text=_completion(EXITS["os_exit_0"]))])
    assert (result.details["status"], result.details["error_type"]) == ("failed", "EarlyExit")
    result = task.score(item, [Generation(text=_completion(EXITS["sys_exit_0"]))])
    assert (result.details["status"], result.details["error_type"]) == ("error", "SystemExit")


def test_humaneval_exit_inside_the_checked_function_fails(humaneval):
    task, item = humaneval
    body = "    import sys\n    sys.exit(0)\n"
    assert task.score(item, [Generation(text=body)]).metrics["pass@1"] == 0.0
    body = "    import os\n    os._exit(0)\n"
    assert task.score(item, [Generation(text=body)]).metrics["pass@1"] == 0.0


@pytest.fixture(scope="module")
def mbpp(make_task):
    task = make_task("mbpp")
    return task, task.items()[0]


@pytest.mark.parametrize("attack", sorted({**EXITS, **FORGERS}))
def test_mbpp_attack_fails(mbpp, attack):
    task, item = mbpp
    wrong = item.data["canonical"].replace("return", "return None and", 1)
    text = "[BEGIN]\n" + wrong + "\n" + {**EXITS, **FORGERS}[attack] + "[DONE]"
    result = task.score(item, [Generation(text=text)])
    assert result.metrics["pass@1"] == 0.0, result.details


def test_mbpp_exit_during_a_test_fails(mbpp):
    """The program passes its first test, then exits while the second runs."""
    task, item = mbpp
    name = item.data["tests"][1].split("(")[0].replace("assert", "").strip()
    text = (
        item.data["canonical"] + "\n"
        f"_real = {name}\n_calls = [0]\n"
        f"def {name}(*args):\n"
        "    _calls[0] += 1\n"
        "    if _calls[0] == 2:\n"
        "        import os\n"
        "        os._exit(0)\n"
        "    return _real(*args)\n"
    )
    result = task.score(item, [Generation(text=text)])
    assert result.metrics["pass@1"] == 0.0, result.details
    assert result.details["tests"]["0"]["status"] == "passed"
    assert result.details["error_type"] == "EarlyExit"


def test_bigcodebench_tampering_with_unittest_fails(make_task):
    task = make_task("bigcodebench")
    item = next(it for it in task.items() if it.id == "BigCodeBench/3")
    tamper = (  # inside the entry point: sanitizing keeps it, and the first test call runs it
        "    import unittest\n"
        "    def _run(self, result=None):\n"
        "        result.startTest(self)\n"
        "        result.stopTest(self)\n"
        "    unittest.TestCase.run = _run\n"
        "    return None\n"
    )
    result = task.score(item, [Generation(text=tamper)])
    assert result.metrics["pass@1"] == 0.0, result.details
    assert result.details["error_type"] == "Tampered"
