"""Sequential early stopping through the plugin (issue 12, item 7): the demo suite with
``sequential: {looks: 4}``, its lm-eval runner replaced by one that scores canned items and logs
which item ids each call asked for. The reference runs every item; a broken candidate stops at
the first look on a quarter of the items; an equal one passes once the boundary allows it; the
summary and the failure say at which look and on how many items."""

from __future__ import annotations

import json

import pytest

from quantgate.sequential import item_order
from tests.support import DEMO_SUITE, GATE_PLUGINS, REPO

pytestmark = pytest.mark.slow

CONFTEST = (
    GATE_PLUGINS
    + """
import json, os
from pathlib import Path
from quantgate.runners import registry
from quantgate.runs import TaskRun

def fake_lmeval(task_name, suite, precision, endpoint, *, out_dir, cache_dir, limit=None,
                items=None):
    scores = json.loads(Path(os.environ["DEMO_SCORES"]).read_text())[precision][task_name]
    chosen = list(scores) if items is None else list(items)
    with open(os.environ["DEMO_CALLS"], "a") as f:
        f.write(json.dumps([precision, task_name, chosen]) + "\\n")
    return TaskRun(task=task_name, precision=precision,
                   scores={k: scores[k] for k in chosen},
                   provenance={"engine": "demo", "engine_version": "0"})

registry.RUNNERS["lmeval"] = fake_lmeval
"""
)
N = 100
RIGHT = {str(i): 1.0 if i % 10 else 0.0 for i in range(N)}  # 90 % right
BROKEN = dict.fromkeys(RIGHT, 0.0)


def test_a_broken_candidate_stops_at_the_first_look_and_says_so(
    gate_project, pytester, monkeypatch
):
    suites = gate_project(CONFTEST)
    (suites / "demo.yaml").write_text(DEMO_SUITE + "sequential: {looks: 4}\n")
    scores, calls = pytester.path / "scores.json", pytester.path / "calls.jsonl"
    scores.write_text(
        json.dumps(
            {p: {"alpha": s, "beta": s} for p, s in (("bf16", RIGHT), ("fp8", BROKEN))}
            | {"nvfp4": {"alpha": RIGHT, "beta": RIGHT}}
        )
    )
    monkeypatch.setenv("DEMO_SCORES", str(scores))
    monkeypatch.setenv("DEMO_CALLS", str(calls))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the subprocess imports plugins/
    baselines = pytester.path / "baselines"

    def run(*args):
        return pytester.runpytest_subprocess(
            "-m", "accuracy", f"--suites-dir={suites}", f"--baselines-dir={baselines}", *args
        )

    assert run("--precision", "bf16", "--snapshot-update").ret == 0
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [(p, t, len(i)) for p, t, i in made] == [("bf16", "alpha", N), ("bf16", "beta", N)]
    calls.unlink()

    result = run("--precision", "fp8", "--precision", "nvfp4")
    result.assert_outcomes(failed=2, passed=2)
    made = [json.loads(line) for line in calls.read_text().splitlines()]
    order = item_order(RIGHT, 1234)  # the suite's seed; the same order for every precision
    asked: dict[tuple[str, str], list[int]] = {}
    for precision, task, items in made:
        assert items == order[: len(items)]  # each chunk: a prefix of the seeded order
        asked.setdefault((precision, task), []).append(len(items))
    # fp8 is decided on its first 25 items; nvfp4 passes at look 3 (75 items, no flip)
    assert asked == {
        ("fp8", "alpha"): [25],
        ("fp8", "beta"): [25],
        ("nvfp4", "alpha"): [25, 50, 75],
        ("nvfp4", "beta"): [25, 50, 75],
    }
    out = result.stdout.str()
    assert "sequential: stopped at look 1 of 4 on 25 of 100 items" in out
    summary = out.split("quantgate gate summary")[1].split("quantgate reasoning hygiene")[0]
    rows = {line.split()[0]: line for line in summary.splitlines() if line.startswith("demo-")}
    assert "25/100 (look 1/4)" in rows["demo-alpha-fp8"] and "fail" in rows["demo-alpha-fp8"]
    assert "75/100 (look 3/4)" in rows["demo-beta-nvfp4"]
    assert rows["demo-beta-nvfp4"].rstrip().endswith("pass")
