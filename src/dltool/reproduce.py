"""``dltool reproduce RUN``: train a run's recorded experiment again and compare the metrics.

The run's resolved config.yaml (with the seed it used) is trained again as a new run,
after its data has been checked against the run's fingerprint (:mod:`dltool.fingerprint`):
a missing or changed data file is refused, naming it, before anything is written. Then
every metric of metrics.json is compared: a run with ``training.deterministic`` must match
exactly, any other within the tolerance (an absolute difference per metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from dltool.errors import NotReproduced
from dltool.rundir import CONFIG, RunDir

DEFAULT_TOLERANCE = 0.01  # absolute, per metric, for runs without training.deterministic


@dataclass
class Reproduction:
    """The original run, the new one, and each metric of both."""

    original: Path
    new: Path
    rows: list[tuple[str, float | None, float | None]]  # split.metric, original, new
    tolerance: float  # 0.0: exactly equal (training.deterministic)

    def differs(self, original: float | None, new: float | None) -> bool:
        if original is None or new is None:
            return True
        return abs(new - original) > self.tolerance or (self.tolerance == 0 and new != original)

    def failures(self) -> list[str]:
        """split.metric of each metric beyond the tolerance (or missing from one run)."""
        return [key for key, original, new in self.rows if self.differs(original, new)]

    def check(self) -> None:
        """Raises: NotReproduced: a metric differs beyond the tolerance (exit 3)."""
        failed = self.failures()
        if failed:
            allowed = "exactly equal (training.deterministic)" if self.tolerance == 0 else f"within {self.tolerance}"  # fmt: skip
            raise NotReproduced(
                f"reproduce: {len(failed)} of {len(self.rows)} metrics differ "
                f"({', '.join(failed)}); expected {allowed}; new run: {self.new}"
            )


def reproduce(
    folder: Path, runs_dir: Path, tolerance: float | None, console: Console
) -> Reproduction:
    """Train ``folder``'s recorded config again as a new run under ``runs_dir``; compare.

    Raises:
        InputError: ``folder`` is not a completed run.
        DataError: its data is missing or changed (names the file), before anything is written.
    """
    from dltool.backend import use_backend
    from dltool.fingerprint import check_run_data
    from dltool.runs import read_run

    run = RunDir.open(folder)
    info = run.require_completed()
    config = run.config()
    recorded = check_run_data(run)
    if recorded is None:
        console.print(
            "[yellow]note[/yellow]: the run recorded no data fingerprint (an older dltool); "
            "its data cannot be checked",
            highlight=False,
        )
    use_backend(config.training.backend, str(run.path / CONFIG))
    from dltool.training import continue_training, run_training

    parent, start = info.get("parent"), info.get("continued_from_epoch")
    if isinstance(parent, str) and isinstance(start, int) and not isinstance(start, bool):
        # a continued run: continue its parent again, for the same epochs
        result = continue_training(
            Path(parent),
            config.training.epochs - start,
            runs_dir,
            console,
            lineage={"reproduces": str(folder.resolve())},
        )
    else:
        result = run_training(
            config,
            source=str(run.path / CONFIG),
            runs_dir=runs_dir,
            console=console,
            smoke=bool(info.get("smoke")),
            expected_data=recorded,
            lineage={"reproduces": str(folder.resolve())},
        )
    before, after = read_run(folder).metrics, read_run(result.path).metrics
    rows = [
        (f"{split}.{name}", before.get(split, {}).get(name), after.get(split, {}).get(name))
        for split in ("train", "validation", "test")
        for name in dict.fromkeys([*before.get(split, {}), *after.get(split, {})])
    ]
    if tolerance is None:
        tolerance = 0.0 if config.training.deterministic else DEFAULT_TOLERANCE
    return Reproduction(folder, result.path, rows, tolerance)
