"""A sweep's folder: sweep.yaml, study.journal, trials.csv, best.json, sweep.png and runs/.

The study (:mod:`.study`) is the record of every trial; trials.csv, best.json and the plot
are rewritten from it, so on many machines they show every machine's trials.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltool.errors import InputError
from dltool.metrics import SPLITS, higher_is_better
from dltool.rundir import (
    STATUS_COMPLETED,
    STATUS_INTERRUPTED,
    STATUS_PRUNED,
    write_csv,
    write_json,
)
from dltool.sweep import pruning
from dltool.sweep import study as studies
from dltool.sweep.spec import SweepConfig, Trial

if TYPE_CHECKING:
    import optuna


SWEEP_FILE = "sweep.yaml"  # the sweep file as run, with the file it came from
TRIALS = "trials.csv"  # a row per finished or interrupted trial
BEST = "best.json"  # the best completed trial
PLOT = "sweep.png"
REPORT = "report.html"  # dltool.report.sweep: the trials on one page
RUNS = "runs"  # the trials' run folders
# trials.csv's columns that are neither a varied parameter nor a metric (see SweepDir.rows)
TRIAL_COLUMNS = ("trial", "seed", "status", "duration_s", "run", "error", "host", "node")
JOURNAL = "study.journal"  # the Optuna study, when it is not in a database


class SweepDir:
    """A sweep's folder: sweep.yaml, trials.csv, best.json, sweep.png, runs/."""

    def __init__(
        self,
        path: Path,
        sweep: SweepConfig,
        trials: list[Trial],
        prefix: str,
        study: optuna.Study | None = None,
        storage: str = "",
        epochs: int = 1,
    ) -> None:
        self.path, self.sweep, self.trials = path, sweep, trials
        self.prefix = prefix  # the base experiment's name; trial runs are PREFIX-trialN
        self.results: dict[int, dict[str, Any]] = {}  # finished: completed, pruned or failed
        self.stopped: dict[int, dict[str, Any]] = {}  # interrupted with a run folder
        self.study = study  # None only in tests of the tables
        self.storage = storage  # the journal's path or the database URL (never printed)
        self.epochs = epochs  # the base experiment's training.epochs (pruning's last rung)
        self.hosts: dict[int, str] = {}  # the worker host of each trial's latest attempt

    @property
    def runs_dir(self) -> Path:
        return self.path / RUNS

    def run_name(self, trial: Trial) -> str:
        """The trial's own run name, e.g. ``student-overfit-trial3`` (zero-padded past 9)."""
        suffix = f"-trial{trial.number:0{len(str(len(self.trials)))}d}"
        return self.prefix[: 80 - len(suffix)] + suffix  # run names are at most 80 characters

    def claim(self) -> studies.Claimed | None:
        """The next trial for this worker to train, taken from the study; None when none waits."""
        if self.study is None:
            return None
        claimed = studies.claim(self.study, self.sweep)
        if claimed is not None:
            self.trials[claimed.trial.number - 1] = claimed.trial  # a tpe trial's values
        return claimed

    def watch(self, claimed: studies.Claimed) -> pruning.Watch | None:
        """What the trial's training reports after each epoch, when the sweep prunes."""
        spec = pruning.prune_spec(self.sweep)
        if spec is None or self.study is None:
            return None
        return pruning.Watch(self.storage, self.sweep.name, claimed.trial_id, self.sweep.epoch_key(), spec, self.epochs)  # fmt: skip

    def record(self, claimed: studies.Claimed, outcome: dict[str, Any]) -> None:
        """Keep a trial's outcome in the study and rewrite trials.csv; an interrupted one is
        queued again (for --resume, or for another worker)."""
        if outcome.get("run"):  # where on its host: other machines read it from the study
            outcome = {**outcome, "run": str(Path(outcome["run"]).absolute())}
        self._keep(claimed.trial.number, outcome)
        if self.study is not None:
            value = self.metric_value(outcome, self.sweep.metric)
            studies.finish(self.study, claimed, outcome, value)
        self.write()

    def _keep(self, number: int, outcome: dict[str, Any]) -> None:
        if outcome["status"] == STATUS_INTERRUPTED:
            if outcome.get("run"):
                self.stopped[number] = outcome
        else:
            self.stopped.pop(number, None)
            self.results[number] = outcome
        if outcome.get("host"):
            self.hosts[number] = outcome["host"]

    def refresh(self) -> None:
        """Read every trial's latest outcome (from every worker) back from the study."""
        if self.study is None:
            return
        from optuna.trial import TrialState

        self.results, self.stopped = {}, {}
        for attempt in studies.attempts(self.study):
            number = attempt.user_attrs[studies.TRIAL]
            if not 1 <= number <= len(self.trials):
                continue
            values = attempt.user_attrs.get(studies.VALUES)
            if values and not self.sweep.planned:
                self.trials[number - 1] = Trial(number, values, self.trials[number - 1].seed)
            outcome = attempt.user_attrs.get(studies.OUTCOME)
            if outcome is None and attempt.state == TrialState.FAIL:
                outcome = studies.stale_outcome(attempt)  # its worker was killed
            if outcome is not None:
                self._keep(number, outcome)

    def finished(self) -> int:
        """How many trials completed or were pruned: those --resume keeps."""
        return sum(o["status"] in (STATUS_COMPLETED, STATUS_PRUNED) for o in self.results.values())

    @property
    def trials_file(self) -> Path:
        return self.path / TRIALS

    def metric_value(self, outcome: dict[str, Any], key: str) -> float | None:
        """A trial's final ``split.metric``, if it has a number for it."""
        split, _, name = key.partition(".")
        value = outcome.get("metrics", {}).get(split, {}).get(name)
        return float(value) if isinstance(value, int | float) else None

    def _columns(self) -> tuple[list[str], list[str]]:
        """``split.metric`` columns for every final value any trial has (the sweep's own
        metric always), then ``gap.metric`` for each metric with train and validation values."""
        seen: dict[tuple[str, str], None] = {}
        for outcome in self.results.values():
            for split in SPLITS:
                for name, value in outcome.get("metrics", {}).get(split, {}).items():
                    if isinstance(value, int | float):
                        seen[(split, name)] = None
        own = self.sweep.metric.split(".", 1)[1]
        names = list(dict.fromkeys([*(name for _, name in seen), own]))
        names.sort(key=lambda name: name != "loss")  # loss first, then in metrics.json order
        values = [f"{s}.{n}" for s in SPLITS for n in names if (s, n) in seen or n == own]
        gaps = [
            f"gap.{n}"
            for n in names
            if n == own or (("train", n) in seen and ("validation", n) in seen)
        ]
        return values, gaps

    def rows(self) -> tuple[list[str], list[list[Any]]]:
        keys = self.sweep.params
        values, gaps = self._columns()
        # node: the Ray node a trial ran on, when the sweep ran on Ray (--ray)
        on_ray = any("node" in o for o in [*self.results.values(), *self.stopped.values()])
        header = ["trial", *keys, "seed", "status", *values, *gaps, "duration_s", "run", "error", "host", *(["node"] if on_ray else [])]  # fmt: skip
        rows = []
        for trial in self.trials:
            outcome = self.results.get(trial.number) or self.stopped.get(trial.number)
            if outcome is None:
                continue
            varied = [json.dumps(trial.values.get(k)) if isinstance(trial.values.get(k), list | dict) else trial.values.get(k) for k in keys]  # fmt: skip
            rows.append([trial.number, *varied, trial.seed, outcome["status"], *(self.metric_value(outcome, c) for c in values), *(self._gap(outcome, c.split(".", 1)[1]) for c in gaps), outcome.get("duration_s"), Path(outcome.get("run", "")).name, outcome.get("error", ""), outcome.get("host", ""), *([outcome.get("node", "")] if on_ray else [])])  # fmt: skip
        return header, rows

    def _gap(self, outcome: dict[str, Any], name: str) -> float | None:
        """Positive = the model does better on data it trained on: overfitting."""
        train_value = self.metric_value(outcome, f"train.{name}")
        validation_value = self.metric_value(outcome, f"validation.{name}")
        if train_value is None or validation_value is None:
            return None
        if higher_is_better(name):
            return train_value - validation_value
        return validation_value - train_value

    def best(self) -> dict[str, Any] | None:
        scored = [
            (self.metric_value(o, self.sweep.metric), n)
            for n, o in self.results.items()
            if o["status"] == STATUS_COMPLETED  # never a pruned trial
        ]
        scored = [(v, n) for v, n in scored if v is not None and math.isfinite(v)]
        if not scored:
            return None
        value, number = (max if self.sweep.maximize else min)(scored)
        trial = self.trials[number - 1]
        return {"trial": number, "metric": self.sweep.metric, "value": value, "values": trial.values, "seed": trial.seed, "run": self.results[number].get("run"), "host": self.results[number].get("host")}  # fmt: skip

    def write(self) -> None:
        """trials.csv and best.json, from the study's record of every trial."""
        self.refresh()
        header, rows = self.rows()
        write_csv(self.path / TRIALS, header, rows)
        best = self.best()
        if best is not None:
            write_json(self.path / BEST, best)


def require_sweep_folder(folder: Path) -> None:
    """Raises: InputError: ``folder`` holds no sweep file."""
    if not (folder / SWEEP_FILE).is_file():
        raise InputError(f"{folder}: not a sweep folder (no {SWEEP_FILE})")


LABEL_CHARACTERS = 24  # a trial's values as a tick label, when every trial's fits; else its number


def plot(directory: SweepDir) -> Path | None:
    """``sweep.png`` (see :func:`plot_figure`), or None before any trial completed."""
    figure = plot_figure(directory)
    if figure is None:
        return None
    import matplotlib.pyplot as plt

    from dltool.rundir import atomic_path

    target = directory.path / PLOT
    with atomic_path(target, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)
    return target


def plot_figure(directory: SweepDir) -> Any:
    """Train and validation values of the sweep's metric per trial (a matplotlib Figure).

    Ticks are trial numbers, with the trial's values only when they are short: long values
    would take the figure's room (they are in trials.csv and report.html). The best trial
    is marked.
    """
    header, rows = directory.rows()
    name = directory.sweep.metric.split(".", 1)[1]
    done = [r for r in rows if r[header.index("status")] == "completed"]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [directory.trials[r[0] - 1].label() for r in done]
    short = all(len(v) <= LABEL_CHARACTERS for v in values)
    labels = [f"{r[0]}: {v}".replace("$", r"\$") if short and v else str(r[0]) for r, v in zip(done, values, strict=True)]  # fmt: skip
    positions = np.arange(len(done))
    figure, axis = plt.subplots(figsize=(min(24.0, max(6.0, 0.45 * len(done) + 2)), 4.6))
    for offset, split in ((-0.2, "train"), (0.2, "validation")):
        heights = [r[header.index(f"{split}.{name}")] for r in done]
        axis.bar(
            positions + offset,
            [v if v is not None else np.nan for v in heights],
            width=0.4,
            label=split,
        )
    best = directory.best()
    if best is not None:
        where = [r[0] for r in done].index(best["trial"])
        axis.axvspan(where - 0.5, where + 0.5, color="#16a34a", alpha=0.15, label=f"best: trial {best['trial']}")  # fmt: skip
    axis.set_xticks(positions, labels=labels, rotation=45 if short else 0, ha="right" if short else "center", fontsize=8)  # fmt: skip
    axis.set_xlabel("trial" if short else "trial (its values: trials.csv, report.html)")
    axis.set_ylabel(name)
    axis.set_title(
        f"{directory.sweep.name}: {name} per trial (gap = overfitting)".replace("$", r"\$")
    )
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure
