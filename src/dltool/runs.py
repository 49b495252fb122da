"""Reading run folders back: ``dltool runs`` and ``dltool runs compare``. No TensorFlow here."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dltool.errors import InputError
from dltool.messages import describe_validation_error, did_you_mean, show
from dltool.metrics import SPLITS as METRIC_SPLITS
from dltool.metrics import higher_is_better
from dltool.rundir import CONFIG, METRICS, RUN_JSON, RunDir, json_object
from dltool.yamlio import YamlProblem, read_yaml_mapping

SPLITS = tuple(reversed(METRIC_SPLITS))  # test first: the number people look for
MAX_PID = 4_194_304  # Linux's largest pid_max (2**22)


class RunFields(BaseModel):
    """The run.json fields that ``dltool runs`` shows, with their types. A run folder
    may come from anywhere: a field that does not fit is left out and named as a
    problem of that run, and the other fields and runs are still listed."""

    model_config = ConfigDict(extra="allow", strict=True, defer_build=True)  # built when first used

    status: str = "unknown"
    name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    epochs_completed: Annotated[int, Field(ge=0)] | None = None
    params: Annotated[int, Field(ge=0)] | None = None
    seed: int | None = None
    overrides: list[str] = []
    pid: Annotated[int, Field(gt=0, le=MAX_PID)] | None = None
    host: str | None = None
    versions: dict[str, str | None] | None = None
    error: str | None = None


def _checked_info(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """run.json's fields, each bad one left out, and one problem line per bad field."""
    problems: list[str] = []
    for _ in range(len(RunFields.model_fields) + 1):  # each round leaves out at least one field
        try:
            RunFields.model_validate(data)
        except ValidationError as error:
            described = describe_validation_error(error, RunFields)
            problems += [f"{RUN_JSON}: {key}: {text}" for key, text in described]
            bad = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
            data = {k: v for k, v in data.items() if k not in bad}
            continue
        break
    return data, problems


def _checked_metrics(data: dict[str, Any]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """metrics.json's splits as ``{split: {metric: number}}``, and one line per value left out."""
    metrics: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    for split in SPLITS:
        values = data.get(split)
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(f"{METRICS}: {split}: not a mapping of metric names to numbers")
            continue
        metrics[split] = {}
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[split][name] = float(value)
            else:
                problems.append(f"{METRICS}: {split}.{name}: not a number (received {show(value)})")
    return metrics, problems


def json_safe(data: Any) -> Any:
    """``data`` as JSON can hold it: keys as text, YAML dates and the like as text."""
    if isinstance(data, dict):
        return {str(k) if not isinstance(k, str) else k: json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    if data is None or isinstance(data, str | int | float | bool):
        return data
    return str(data)


@dataclass
class RunInfo:
    """One run folder as listed: run.json, metrics.json and the flattened config."""

    path: Path
    info: dict[str, Any]  # run.json, its bad fields left out
    metrics: dict[str, dict[str, float]]  # split -> metric -> number
    config: dict[str, Any]  # dotted key -> value
    nested_config: dict[str, Any] = field(default_factory=dict)  # config.yaml as read
    problems: list[str] = field(default_factory=list)  # one line per file or field left out

    @property
    def status(self) -> str:
        """run.json's status, or ``crashed`` for a run whose process died while running."""
        return RunDir.status_of(self.info, self.path)

    def has(self, key: str) -> bool:
        """Whether :meth:`value` finds ``key`` at all (a null value counts as found)."""
        split, _, name = key.partition(".")
        return (
            key == "status"
            or key in self.config
            or key in self.info
            or (bool(name) and split in SPLITS and name in self.metrics.get(split, {}))
            or any(key in self.metrics.get(s, {}) for s in SPLITS)
        )

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
            "finished_at": self.info.get("finished_at"),
            "duration_s": self.info.get("duration_s"),
            "epochs_completed": self.info.get("epochs_completed"),
            "params": self.info.get("params"),
            "seed": self.info.get("seed"),
            "overrides": self.info.get("overrides", []),
            "error": self.info.get("error"),
            "versions": self.info.get("versions"),
            "data_fingerprint": self.info.get("data_fingerprint"),  # dltool.fingerprint
            "metrics": self.metrics,
            "config": json_safe(self.nested_config),
            "problems": self.problems,
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
    raw_info, refused = json_object(folder / RUN_JSON)
    if refused:
        problems.append(f"{RUN_JSON}: {refused}")
    raw_metrics, refused = json_object(folder / METRICS)
    if refused:
        problems.append(f"{METRICS}: {refused}")
    info, info_problems = _checked_info(raw_info)
    metrics, metric_problems = _checked_metrics(raw_metrics)
    problems += info_problems + metric_problems
    return RunInfo(folder, info, metrics, flatten(config), config, problems)


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
    pairs = parse_filters(filters)
    for key, wanted in pairs:  # a misspelled key would match nothing, silently
        if runs and not any(r.has(key) for r in runs):
            known = sorted(
                {k for r in runs for k in r.config}
                | {f"{s}.{m}" for r in runs for s in SPLITS for m in r.metrics.get(s, {})}
                | {k for r in runs for k, v in r.info.items() if not isinstance(v, dict | list)}
                | {"status"}
            )
            raise InputError(
                f"--filter {key}={wanted}: no run has the key {key!r}{did_you_mean(key, known)} "
                "(expected a config key such as data.labels, a metric such as test.accuracy, or "
                "a run.json field such as status)"
            )
    chosen = [r for r in runs if all(_matches(r, k, v) for k, v in pairs)]
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
        and len({json.dumps(r.config.get(key), sort_keys=True, default=str) for r in runs}) > 1
    }
    metric_keys = [
        f"{s}.{m}"
        for s in SPLITS
        for m in dict.fromkeys(m for r in runs for m in r.metrics.get(s, {}))
    ]
    from dltool.fingerprint import differences as data_differences

    return {
        "runs": [r.path.name for r in runs],
        "config_differences": json_safe(differences),
        # each split or source file whose SHA-256 differs, 12 hex digits per run (None: not recorded)
        "data_differences": data_differences([r.info.get("data_fingerprint") for r in runs]),
        "metrics": {key: [r.value(key) for r in runs] for key in metric_keys},
        "status": [r.status for r in runs],
        "params": [r.info.get("params") for r in runs],
        "problems": {str(r.path): r.problems for r in runs if r.problems},
    }
