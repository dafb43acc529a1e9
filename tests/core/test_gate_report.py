"""The summary's MDE column shows the drop FAIL catches with power 1 - beta (issue 12 item 2)."""

import pytest

from quantgate.gate import compare
from quantgate.report import summary_table, verdict_record, verdict_table


def _items(values) -> dict[str, float]:
    return {f"q{i:04d}": float(v) for i, v in enumerate(values)}


REF = _items([1.0] * 400 + [0.0] * 100)
CAND = dict(REF, **{f"q{i:04d}": 0.0 for i in range(10)})  # -2 pp, margin 3 pp


def test_verdict_record_carries_both_mdes_and_the_fail_rule():
    v = compare(REF, CAND, margin=0.03)
    record = verdict_record("s-t-fp8", "bf16", v)
    assert record["mde"] == v.fail_mde and record["test_mde"] == v.mde
    assert record["fail_rule"] == "default"
    assert record["required_n_observed"] == v.required_n_observed
    assert record["p_noninferiority"] == v.p_noninferiority


def test_the_mde_column_shows_the_drop_fail_catches():
    v = compare(REF, CAND, margin=0.03)
    assert f"{v.fail_mde * 100:.1f} pp" != f"{v.mde * 100:.1f} pp"
    header, _, row = verdict_table([("s-t-fp8", "bf16", v)]).splitlines()
    end = header.index("MDE") + len("MDE")  # the column is right-aligned
    assert row[:end].endswith(f" {v.fail_mde * 100:.1f} pp")
    assert f"{v.mde * 100:.1f} pp" not in row


def test_inconclusive_shows_the_planning_n():
    v = compare(
        _items([1.0] * 20 + [0.0] * 10),
        dict(_items([1.0] * 20 + [0.0] * 10), q0000=0.0),
        margin=0.05,
    )
    assert v.outcome == "inconclusive"
    table = summary_table([verdict_record("s-t-fp8", "bf16", v)])
    assert f"inconclusive (n≈{v.required_n})" in table


def test_strict_rule_is_visible_in_the_verdict_cell():
    v = compare(REF, dict(REF, **{f"q{i:04d}": 0.0 for i in range(60)}), margin=0.03, fail="strict")
    assert v.outcome == "fail"
    table = verdict_table([("s-t-fp8", "bf16", v)])
    assert table.splitlines()[-1].rstrip().endswith("fail (strict)")


@pytest.mark.parametrize("method", ["abs_drop", "unpaired"])
def test_other_methods_fill_the_record_too(method):
    v = compare(REF, CAND, margin=0.03, method=method)
    record = verdict_record("s-t-fp8", "bf16", v)
    assert record["mde"] == v.fail_mde is not None
