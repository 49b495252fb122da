"""What ``training.record_internals`` costs, as a share of fit time.

Recording has two parts, measured apart:

- **In the training step**: the few operations it adds to each compiled step (gradient norms
  and the ReLU outputs' maxima; :class:`dltool.internals.TrainingSteps`). Each config's model is
  built twice, identically, in this process, one of them with the recording attached; they are
  fitted one epoch at a time on the same training data, alternating (plain, recorded,
  recorded, plain, ...), ``--epochs`` times each after one untimed epoch each; the cost is the
  median of the paired ratios, and its seconds are taken as a share of dltool's fit time
  (below). Epoch times of neighbouring epochs in one process vary far less than whole runs do
  (whole ``dltool train`` runs of the same config differed by up to 15% on this shared
  machine, too much to see 3% in).
- **After each epoch**: the callback's own work (histograms, the probe batch for ReLU layers
  when not on TensorFlow, the pictures at the end), which it times itself: ``seconds`` in
  internals.json, over the fit time of ``--runs`` whole ``dltool train`` runs (median), whose
  fit time per epoch (validation and every callback included) is the target's measure.

The whole cost is their sum. Writes benchmarks/results-internals.md. About 8 minutes on 2 cores.

    .venv/bin/python benchmarks/internals.py [--runs N] [--epochs N] [--only NAME] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("student_pass_rule", "digits_cnn", "shapes_cnn")
TARGET = 0.03  # issue 14: at most 3% of fit time


def callback_share(config: str, scratch: Path) -> tuple[float, float]:
    """(the seconds the callback timed itself over the run's fit time, the run's fit seconds
    per epoch): a whole dltool train, validation and every callback included."""
    import dltool

    runs = scratch / f"{config}-{time.monotonic_ns()}"
    run = dltool.train(REPO / "configs" / f"{config}.yaml", overrides=["training.record_internals=true"], runs_dir=runs, quiet=True)  # fmt: skip
    info = json.loads((run.path / "run.json").read_text(encoding="utf-8"))
    recorded = json.loads((run.path / "internals.json").read_text(encoding="utf-8"))
    fit = float(info["timings"]["fit"])
    return float(recorded["seconds"]) / fit, fit / int(info["epochs_completed"])


def step_cost(config: str, epochs: int) -> tuple[float, float, float]:
    """(seconds per epoch plain, recorded, the median paired ratio - 1)."""
    from dltool.config import load_config
    from dltool.internals import TrainingSteps, is_relu
    from dltool.model import compile_model
    from dltool.pipelines import make_pipeline, steps_per_epoch
    from dltool.prepare import prepare
    from dltool.views import console

    path = REPO / "configs" / f"{config}.yaml"
    models = []
    for _ in range(2):  # the same seed: the same model, built the same way
        config = load_config(path)
        prepared = prepare(config, str(path), console(quiet=True), smoke=False)
        steps = steps_per_epoch(len(prepared.dataset.x_train), prepared.batch_size)
        compile_model(prepared.model, config, steps)
        models.append(prepared.model)
    recorded = models[1]
    recording = TrainingSteps(recorded, [layer for layer in recorded.layers if is_relu(layer)])
    data = make_pipeline(prepared.dataset.x_train, prepared.labels["train"], prepared.batch_size)
    times: dict[int, list[float]] = {0: [], 1: []}
    for index in range(2 * epochs + 2):
        side = index % 4 in (1, 2)  # plain, recorded, recorded, plain, ...
        started = time.perf_counter()
        models[side].fit(data, epochs=1, verbose=0, shuffle=False)
        seconds = time.perf_counter() - started
        if side:
            recording.take()
        if index >= 2:  # the first of each traces the train function
            times[side].append(seconds)
    ratios = [b / a for a, b in zip(times[0], times[1], strict=True)]
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="whole runs per config (callback)")
    parser.add_argument("--epochs", type=int, default=12, help="timed epochs per side (step)")
    parser.add_argument("--only", choices=CONFIGS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results-internals.md")  # fmt: skip
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dltool-bench-internals-") as scratch:
        for config in [args.only] if args.only else CONFIGS:
            plain, recorded, in_step = step_cost(config, args.epochs)
            runs = [callback_share(config, Path(scratch)) for _ in range(args.runs)]
            shares = [share for share, _ in runs]
            own, fit = statistics.median(shares), statistics.median(f for _, f in runs)
            of_fit = in_step * plain / fit  # the step's extra seconds, as a share of dltool's fit
            rows.append((config, plain, recorded, in_step, fit, of_fit, own, min(shares), max(shares)))  # fmt: skip
            print(f"{config}: step {in_step:+.1%} of a bare epoch ({plain:.4f} -> {recorded:.4f} s), {of_fit:+.1%} of fit ({fit:.4f} s/epoch); callback {own:.1%}; whole {of_fit + own:+.1%}")  # fmt: skip
    load = os.getloadavg()
    lines = [
        "# training.record_internals: what recording costs",
        "",
        f"`python benchmarks/internals.py --runs {args.runs} --epochs {args.epochs}` on "
        f"{time.strftime('%Y-%m-%d')} (load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} at the end). In the training step: the config's model fitted one epoch "
        "at a time with and without the recording, alternating, in one process, on its "
        f"training data alone (a bare epoch: seconds, medians of {args.epochs}; the cost is the "
        "median of the paired ratios); those extra seconds are then taken as a share of "
        f"dltool's fit time per epoch (the median of {args.runs} whole `dltool train` runs with "
        "recording on: validation and every callback included). After each epoch: the seconds "
        "the callback timed itself (internals.json) over the same runs' fit time (median, "
        "min-max in brackets). The whole cost is the two shares of fit time together. "
        f"Target: at most {TARGET:.0%} of fit time.",
        "",
        "| config | bare epoch, plain (s) | recorded (s) | in the step, of a bare epoch "
        "| dltool's fit (s/epoch) | in the step, of fit | after each epoch, of fit | whole cost |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {c} | {a:.4f} | {b:.4f} | {w:+.1%} | {f:.4f} | {o:+.1%} | {d:.1%} ({d0:.1%}-{d1:.1%}) | {o + d:+.1%} |"
            for c, a, b, w, f, o, d, d0, d1 in rows
        ),
        "",
        "Target met (whole cost): "
        + ", ".join(f"{c} {'yes' if o + d <= TARGET else 'no'}" for c, _, _, _, _, o, d, *_ in rows)
        + ".",
    ]
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
