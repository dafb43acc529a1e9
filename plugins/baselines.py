"""syrupy extension storing baselines at ``baselines/<suite>/<task>/<precision>.json``.

One job each, as syrupy's own extensions do: serialize (:meth:`Baseline.to_json`), locate (the
path above, from the test's ``accuracy_case``), compare (same identity and items, and the gate
does not call it a drop — tolerance, not equality). Discovery only ever sees the running test's
own file, so ``--snapshot-update`` can never delete a baseline of a task or precision that did
not run; writes are atomic.

    def test_x(accuracy_case, snapshot):
        assert snapshot(extension_class=BaselineExtension) == baseline
"""

from __future__ import annotations

from pathlib import Path

from syrupy.data import SnapshotCollections
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from plugins.cases import case_of

BASELINES_DIR_OPTION = "--baselines-dir"


def baselines_root(config) -> Path:
    given = config.getoption(BASELINES_DIR_OPTION)
    return Path(given) if given else config.rootpath / "baselines"


class BaselineExtension(SingleFileSnapshotExtension):
    file_extension = "json"
    _write_mode = WriteMode.TEXT

    # --- serialize ---
    def serialize(self, data, *, exclude=None, include=None, matcher=None) -> str:
        return data.to_json()

    # --- locate ---
    @classmethod
    def dirname(cls, *, test_location) -> str:
        case = case_of(test_location.item)
        root = baselines_root(test_location.item.config)
        return str(root / case.suite / case.task if case else root)

    @classmethod
    def discovery_dirname(cls, *, test_location) -> str:
        return cls.dirname(test_location=test_location)

    @classmethod
    def get_file_basename(cls, *, test_location, index) -> str:
        return case_of(test_location.item).precision

    @classmethod
    def get_snapshot_name(cls, *, test_location, index=0) -> str:
        return test_location.snapshot_name

    @classmethod
    def matches_test_location(cls, *, test_location, snapshot_location: str) -> bool:
        return Path(snapshot_location) == Path(
            cls.get_location(test_location=test_location, index=0)
        )

    def discover_snapshots(self, *, test_location, ignore_extensions=None) -> SnapshotCollections:
        """Only this test's own baseline: nothing else can ever be "unused" and deleted."""
        discovered = SnapshotCollections()
        if case_of(test_location.item) is None:  # syrupy scans every collected test's site
            return discovered
        own = self.get_location(test_location=test_location, index=0)
        if Path(own).exists():
            discovered.add(self.read_snapshot_collection(snapshot_location=own))
        return discovered

    def read_snapshot_data_from_location(self, *, snapshot_location, snapshot_name, session_id):
        """A file that is not UTF-8 text (or cannot be read) is no baseline: the decision has
        already named it, and --snapshot-update replaces it."""
        try:
            return super().read_snapshot_data_from_location(
                snapshot_location=snapshot_location,
                snapshot_name=snapshot_name,
                session_id=session_id,
            )
        except (UnicodeDecodeError, OSError):
            return None

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection, name_order=None) -> None:
        from quantgate.jsonl import atomic_write_text

        atomic_write_text(Path(snapshot_collection.location), next(iter(snapshot_collection)).data)

    # --- compare ---
    def matches(self, *, serialized_data, snapshot_data) -> bool:
        from quantgate.baselines import Baseline, BaselineError, drifted

        try:
            stored = Baseline.from_json(snapshot_data)
        except BaselineError:
            return False
        return not drifted(stored, Baseline.from_json(serialized_data))
