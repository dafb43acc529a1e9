"""Registers quantgate's pytest plugins (thin glue over the ``quantgate`` library).

- ``plugins.options``: the ``quantgate`` option group (--suite, --precision, --server-url, ...)
- ``plugins.cases``: one case per (suite, task, precision), grouped by precision
- ``plugins.fixtures``: session state, servers, ``evaluate`` and ``baseline`` fixtures
- ``plugins.decision``: the per-case check (quantgate.decision) in pytest's words
- ``plugins.throughput``: one pytest-benchmark case per (suite, precision)
- ``plugins.summary``: the session's summary sections (gate, LiveBench, throughput) and report
- ``plugins.progress``: progress lines of long generations (quantgate.progress), past capture
"""

pytest_plugins = [
    "plugins.options",
    "plugins.cases",
    "plugins.fixtures",
    "plugins.decision",
    "plugins.throughput",
    "plugins.summary",
    "plugins.progress",
    "pytester",  # the plugin tests in tests/plugin
]
