"""Reading run folders back: ``dltool runs`` and ``dltool runs compare``. No TensorFlow here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltool.errors import InputError
from dltool.messages import did_you_mean
from dltool.metrics import SPLITS as METRIC_SPLITS
from dltool.metrics import higher_is_better
from dltool.rundir import CONFIG, METRICS, RUN_JSON, RunDir, json_object
from dltool.yamlio import YamlProblem, read_yaml_mapping

SPLITS = tuple(reversed(METRIC_SPLITS))  # test first: the number people look for


@dataclass
class RunInfo:
    """One run folder as listed: run.json, metrics.json and the flattened config."""

    path: Path
    info: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]  # dotted key -> value
    problem: str | None = None  # files that could not be read, "config.yaml: why; ..."

    @property
    def status(self) -> str:
        """run.json's status, or ``crashed`` for a run whose process died while running."""
        return RunDir.status_of(self.info, self.path)

    def value(self, key: str) -> Any:
        """A metric (``test.accuracy``, or ``accuracy`` = the first split that has it),
        a run.json field (``status``, ``params``) or a config key (``data.labels``)."""
        if key == "status":
            return self.status
        if key in self.config:
            return self.config[key]
        split, _, name = key.partition(".")
        if name and split in SPLITS:
            return self.metrics.get(split, {}).get(name)
        for split in SPLITS:
            if key in self.metrics.get(split, {}):
                return self.metrics[split][key]
        return self.info.get(key)

    def summary(self) -> dict[str, Any]:
        return {
            "run": self.path.name,
            "path": str(self.path),
            "name": self.info.get("name"),
            "status": self.status,
            "started_at": self.info.get("started_at"),
            "duration_s": self.info.get("duration_s"),
            "params": self.info.get("params"),
            "seed": self.info.get("seed"),
            "overrides": self.info.get("overrides", []),
            "metrics": {
                s: self.metrics[s] for s in SPLITS if isinstance(self.metrics.get(s), dict)
            },
            **({"config_problem": self.problem} if self.problem else {}),
        }


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": [1, {"c": 2}]}}`` -> ``{"a.b[0]": 1, "a.b[1].c": 2}``."""
    if isinstance(data, dict):
        items: dict[str, Any] = {}
        for key, value in data.items():
            items.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        items = {}
        for index, value in enumerate(data):
            items.update(flatten(value, f"{prefix}[{index}]"))
        return items
    return {prefix: data}


def _read_metrics(path: Path) -> tuple[dict[str, Any], str | None]:
    """metrics.json, keeping only splits that are mappings (``runs`` indexes into them),
    and why the file was refused, if it was."""
    data, refused = json_object(path)
    return {k: v for k, v in data.items() if k not in SPLITS or isinstance(v, dict)}, refused


def read_run(folder: Path) -> RunInfo:
    """A run folder; unreadable parts read as empty (a crashed run may lack them).

    Raises:
        InputError: ``folder`` is not a run folder.
    """
    RunDir.open(folder)  # refuses a folder without run.json
    # The strict reader: a config.yaml planted in a runs folder (an alias bomb, a
    # cycle, absurd nesting, a FIFO, a device) is refused before flatten() walks it.
    problems = []
    try:
        config: dict[str, Any] = read_yaml_mapping(folder / CONFIG)
    except YamlProblem as error:
        config = {}
        problems.append(f"{CONFIG}: {error}")
    info, refused = json_object(folder / RUN_JSON)
    if refused:
        problems.append(f"{RUN_JSON}: {refused}")
    metrics, refused = _read_metrics(folder / METRICS)
    if refused:
        problems.append(f"{METRICS}: {refused}")
    return RunInfo(folder, info, metrics, flatten(config), "; ".join(problems) or None)


def list_runs(runs_dir: Path) -> list[RunInfo]:
    """Every run folder directly under ``runs_dir``, oldest first."""
    if not runs_dir.is_dir():
        raise InputError(f"{runs_dir}: no such runs folder")
    folders = [p for p in runs_dir.iterdir() if p.is_dir() and (p / RUN_JSON).is_file()]
    runs = [read_run(p) for p in folders]
    return sorted(runs, key=lambda r: (str(r.info.get("started_at", "")), r.path.name))


def parse_filters(filters: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for text in filters:
        key, sign, value = text.partition("=")
        if not sign or not key:
            raise InputError(
                f"--filter {text}: expected KEY=VALUE, e.g. status=completed or data.labels=rule"
            )
        pairs.append((key.strip(), value.strip()))
    return pairs


def _matches(run: RunInfo, key: str, wanted: str) -> bool:
    value = run.value(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted


def select(
    runs: list[RunInfo], filters: list[str], sort: str | None, reverse: bool
) -> list[RunInfo]:
    """Runs matching every ``KEY=VALUE`` filter, sorted best-first by ``sort`` if given.

    Raises:
        InputError: a filter is not ``KEY=VALUE``, or no run has the sort key.
    """
    chosen = [r for r in runs if all(_matches(r, k, v) for k, v in parse_filters(filters))]
    if sort is None:
        return list(reversed(chosen)) if reverse else chosen
    with_value = [r for r in chosen if isinstance(r.value(sort), int | float)]
    if chosen and not with_value:
        known = sorted({f"{s}.{m}" for r in chosen for s in SPLITS for m in r.metrics.get(s, {})})
        raise InputError(
            f"--sort {sort}: no run has this number{did_you_mean(sort, known)} (expected one of {', '.join(known) or 'no metrics yet'})"
        )
    best_first = higher_is_better(sort)
    ordered = sorted(with_value, key=lambda r: r.value(sort), reverse=best_first)
    ordered += [r for r in chosen if r not in with_value]  # runs without the number go last
    return list(reversed(ordered)) if reverse else ordered


def compare(runs: list[RunInfo]) -> dict[str, Any]:
    """Config keys whose values differ between the runs, and their metrics side by side."""
    keys = sorted({k for r in runs for k in r.config})
    differences = {
        key: [r.config.get(key) for r in runs]
        for key in keys
        if key not in ("name",)
        and len({json.dumps(r.config.get(key), sort_keys=True) for r in runs}) > 1
    }
    metric_keys = [
        f"{s}.{m}"
        for s in SPLITS
        for m in dict.fromkeys(m for r in runs for m in r.metrics.get(s, {}))
    ]
    return {
        "runs": [r.path.name for r in runs],
        "config_differences": differences,
        "metrics": {key: [r.value(key) for r in runs] for key in metric_keys},
        "status": [r.status for r in runs],
        "params": [r.info.get("params") for r in runs],
    }
