"""Every shipped example config trains (smoke-sized here; full runs are measured in the README)."""

from __future__ import annotations

import json

import pytest

from conftest import SHIPPED_CONFIGS, ShippedSmoke
from dltool.rundir import RUN_FILES

EXAMPLES = SHIPPED_CONFIGS


@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
@pytest.mark.slow
def test_example_trains_one_epoch(shipped_smoke: ShippedSmoke, name: str) -> None:
    """Each shipped config trains at smoke size (1 epoch, at most 256 rows a split; conftest's
    shipped_smoke) and leaves a complete run folder."""
    run = shipped_smoke.runs[name]
    assert [file for file in RUN_FILES if not (run / file).is_file()] == []
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["epochs_completed"]) == ("completed", 1)


@pytest.mark.slow
def test_smoke_command_over_every_config(shipped_smoke: ShippedSmoke) -> None:
    """The documented CI guard, on the real files: `dltool smoke configs/*.yaml`."""
    result = shipped_smoke.result
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\tok\t") == len(EXAMPLES)
    assert sorted(shipped_smoke.runs) == [path.stem for path in EXAMPLES]
