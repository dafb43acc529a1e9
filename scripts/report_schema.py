"""Write docs/report-schema.md from quantgate.reporting.schema (run after changing the schema):

.venv/bin/python scripts/report_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from quantgate.reporting.schema import SCHEMA_VERSION, Report

DOC = Path(__file__).resolve().parents[1] / "docs" / "report-schema.md"
INTRO = f"""# report.json (schema version {SCHEMA_VERSION})

Every accuracy session writes a report folder (`<quantgate-dir>/reports/<UTC timestamp>/`, or
`--report-dir`; `reports/latest` points at the newest): `report.md`, `report.json`,
`relative.svg`, `flips.svg`. `python -m quantgate report [.quantgate]` rebuilds one from the
stored runs (`runs/<suite>/<precision>/<task>/run.json`) and the baselines without a server;
`python -m quantgate report FOLDER` re-renders a folder from its `report.json`.

`report.json` is `quantgate.reporting.schema.Report` (pydantic). Scores, differences, intervals
and margins are fractions (0.873, -0.012), not percent; a field a case does not have is `null`.

- `tasks`: one entry per (suite, task, precision) that ran, the reference first. For a candidate,
  `vs` is the reference precision and the gate's numbers are filled (`diff`, the one-sided
  interval `ci_low`/`ci_high`, `margin`, `flips_down`/`flips_up`, `mde`, `verdict`,
  `required_n` when inconclusive); `relative` is `score / reference_score` over the same items.
  A sequential run (`sequential: {{looks: K}}`) that stopped early has `look` and `looks` (where
  it stopped) and `total` (the task's items; `n` is the items it generated).
  For the reference, `vs` is `own history` (gated against its stored baseline), `written` (a
  `--snapshot-update`) or `replaced`.
- `suites`: each suite's model, reference, file and its sha256, tensor parallel size, and per
  precision that ran: checkpoint, revision (what pins the weights), `--quantization`, engine,
  engine version, and for `--server-url` deployments the endpoint and served model.
- `suite_verdicts`, `livebench`, `throughput`, `hygiene`: the rows the summary tables print.
- `artifacts`: where the samples, server logs and baselines are.

The JSON Schema (`Report.model_json_schema()`; a test keeps this file equal to it):
"""


def main() -> None:
    schema = json.dumps(Report.model_json_schema(), indent=1)
    DOC.write_text(f"{INTRO}\n```json\n{schema}\n```\n")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
