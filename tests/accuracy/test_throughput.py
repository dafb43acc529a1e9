"""Generation throughput per (suite, precision), with pytest-benchmark, on the accuracy servers.

    pytest -m "accuracy and benchmark" --suite tiny --benchmark-save=nightly
    pytest -m "accuracy and benchmark" --suite tiny --benchmark-compare

Each case runs right after its precision's task cases, on the same server; the session summary
shows every precision's tokens/s and requests/s relative to the suite's reference (BF16 = 100 %).
"""

import pytest

# slow: each case starts (or reuses) a real server; `-m "not slow"` replaces the default
# `-m "not accuracy"`, so the quick tier must not pick these up
pytestmark = [pytest.mark.accuracy, pytest.mark.benchmark, pytest.mark.slow]


def test_throughput(throughput_case, throughput, benchmark):
    bench = throughput(throughput_case)  # the server is up before anything is timed
    benchmark.group = f"throughput {throughput_case.suite}"
    benchmark.pedantic(bench.round, rounds=bench.rounds, iterations=1, warmup_rounds=0)
    result = bench.finish(benchmark)  # extra_info: tokens/s, req/s, requests, concurrency, ...
    assert result.completion_tokens > 0, f"{throughput_case.id}: the server generated no tokens"
