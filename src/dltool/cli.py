"""The ``dltool`` command line. Thin: parse arguments, call one function, map errors to exit codes.

Never import Keras or TensorFlow at module level here: ``--help``, ``validate``
and ``layers`` must start instantly. Commands that train import them lazily.

Longer than 400 lines because it declares every command and option: each command's
body is a few lines that call the module owning the work.
"""

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from dltool import __version__
from dltool.errors import DltoolError, ExitCode, RunFolderIncomplete, UsageError
from dltool.interrupts import handling_signals, raise_if_requested, stdout_may_close, stop_of

if TYPE_CHECKING:
    from dltool.training import RunResult

_state = {"debug": False}

# Pydantic looks for its plugins when it builds its first validator, by reading the metadata
# of every installed package: 24 ms of CPU for `dltool validate` here (about 100 packages),
# more with more installed. dltool uses none. Set PYDANTIC_DISABLE_PLUGINS yourself (to "" to allow them all) to choose.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _pydantic_without_plugin_lookup() -> None:
    """Import pydantic's plugin loader, which its first validator imports, with a stand-in
    for ``importlib.metadata.entry_points``: the loader imports that package-metadata
    reader at its top (about 20 ms, the email package included) for the plugin lookup
    that PYDANTIC_DISABLE_PLUGINS skips. Only while plugins are off (with them on, the
    lookup needs the real reader), and after ``pydantic.plugin`` itself, so that only the
    loader's own imports see the stand-in. Called before Typer converts a command's
    options: its first TypeAdapter builds a validator."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") not in ("__all__", "1", "true"):
        return  # pydantic's own "all plugins off" values
    import pydantic.plugin  # noqa: F401

    from dltool.lazyimports import import_with_stand_ins

    import_with_stand_ins("pydantic.plugin._loader", {"importlib.metadata": "entry_points"})


def _out() -> Console:
    # Created per call: Typer's CliRunner swaps sys.stdout for each invocation.
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)  # soft_wrap: one line per problem


def report(error: Exception | KeyboardInterrupt) -> int:
    """Print a failure as plain lines on stderr and return its exit code: the one place
    that maps exceptions to exit codes (no traceback unless --debug)."""
    if isinstance(error, KeyboardInterrupt):
        # One line: the command's own ("interrupted after epoch 3; resume with: ..."),
        # else the bare word. Yet another Ctrl-C now must not cut it short.
        stop = stop_of(error)
        with _signals_ignored():
            _err().print(escape(str(error) or stop.word))
        return int(stop.exit_code)
    if _state["debug"]:
        raise error
    if isinstance(error, DltoolError):
        for line in error.lines:
            _err().print(f"[red]error[/red]: {escape(line)}")
        return int(error.exit_code)
    _err().print(
        f"[red]error[/red]: internal error: {type(error).__name__}: "
        f"{escape(' '.join(str(error).split()))} "
        "(a bug in dltool: rerun with --debug for the traceback and please report it)"
    )
    return int(ExitCode.INTERNAL)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM for a moment (main thread only): the command has ended."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Reported(TyperGroup):
    """Every command runs inside :func:`report`'s mapping of exceptions to exit codes, and a
    usage mistake (an unknown option, a missing value) is one ``error:`` line, exit 2, like
    every other refusal (instead of Typer's usage text and boxed panel)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except (Exception, KeyboardInterrupt) as error:
            raise typer.Exit(report(error)) from None

    def main(self, *args: Any, **kwargs: Any) -> Any:
        import sys

        given = kwargs.get("args", args[0] if args else None)
        given = sys.argv[1:] if given is None else list(given)
        if not given or "--help" in given:
            _light_help_renderer()
        if _named_command(given) is not None:  # a command, whose options Typer converts
            _pydantic_without_plugin_lookup()  # with pydantic (not --version, --help)
        standalone_mode = kwargs.pop("standalone_mode", True)
        try:
            code = super().main(
                *args, **{**kwargs, "standalone_mode": False}
            )  # an Exit code, or None
        except typer.Abort:
            code = report(KeyboardInterrupt())
        except typer.TyperException as error:  # click's UsageError and BadParameter
            if not hasattr(error, "format_message"):
                raise
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "dltool"
            message = " ".join(error.format_message().split()).rstrip(".")
            if message:  # empty after no_args_is_help, which has printed the help already
                _err().print(f"[red]error[/red]: {escape(f'{command}: {message} (see {command} --help)')}")  # fmt: skip
            code = int(getattr(error, "exit_code", ExitCode.REFUSED))
        if not standalone_mode:
            return code
        raise SystemExit(code or 0)


# Modules that Typer's help renderer imports at its top for features dltool turns off:
# Markdown help text (rich_markup_mode="markdown"; dltool's is "rich") and pretty
# tracebacks (pretty_exceptions_enable=False). Their import (markdown-it's parser, rich's
# traceback and pretty-printer) was about a third of `dltool --help`.
_UNUSED_BY_HELP = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def _light_help_renderer() -> None:
    """Import ``typer.rich_utils`` with stand-ins for :data:`_UNUSED_BY_HELP` (Typer only
    constructs these, and only for the features dltool turns off)."""
    from dltool.lazyimports import import_with_stand_ins

    import_with_stand_ins("typer.rich_utils", _UNUSED_BY_HELP)


def _value_name(parameter: Any, ctx: Any) -> str | None:
    """The help's type column: a value name (``--runs-dir RUNS_DIR``) for options that take
    a value, nothing for flags and arguments. Typer 0.29 prints ``<bool>`` beside every
    flag and ``<list[Path]>`` beside arguments, which reads as if flags took values."""
    if getattr(parameter, "is_flag", False) or isinstance(parameter, TyperArgument):
        return None
    return str(parameter.metavar or parameter.name.upper())


TyperOption.display_type_rich = _value_name  # type: ignore[method-assign,assignment]
TyperArgument.display_type_rich = _value_name  # type: ignore[method-assign,assignment]


app = typer.Typer(
    cls=_Reported,
    name="dltool",
    help="Train Keras models from YAML experiment files. Every run gets its own folder under runs/.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # our handler prints one line; --debug shows the traceback
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dltool {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="DLTOOL_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """Train Keras models from YAML experiment files. Every run gets its own folder under runs/."""
    _state["debug"] = debug


ConfigArg = Annotated[Path, typer.Argument(help="Experiment file (YAML).", show_default=False)]
ConfigsArg = Annotated[
    list[Path],
    typer.Argument(help="Experiment files (YAML), run one after another.", show_default=False),
]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Parent folder of run folders.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a key, e.g. --set training.epochs=5 --set model.layers[0].units=64.",
        show_default=False,
    ),
]


@app.command()
def train(
    config_paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Experiment files (YAML), run one after another.", show_default=False),
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    name: Annotated[
        str | None, typer.Option("--name", help="Run name (default: the config's name).")
    ] = None,
    overrides: SetOption = None,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="Quick check: 1 epoch on at most 256 rows of each split."),
    ] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="Write profile.json: seconds per phase of the run.")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            metavar="RUN_FOLDER",
            help="Continue an interrupted or crashed run folder from its checkpoint.",
        ),
    ] = None,
) -> None:
    """Train the model an experiment file describes and save everything in a new run folder."""
    from dltool import views

    if resume is not None:
        if config_paths:
            raise UsageError("--resume continues a run folder: give no experiment files with it")
        ignored = [
            *(f"--set {text}" for text in overrides or []),
            *([f"--name {name}"] if name is not None else []),
            *(["--smoke"] if smoke else []),
            *(["--profile"] if profile else []),
            *([f"--runs-dir {runs_dir}"] if runs_dir != Path("runs") else []),
        ]
        if ignored:
            raise UsageError(
                f"--resume continues a run with the settings it started with, so it takes no "
                f"{ignored[0].split()[0]} (received {' '.join(ignored)}); to change a run, train "
                f"a new one; to train a completed run longer: dltool continue RUN --epochs N"
            )
        with handling_signals():
            from dltool.backend import use_backend
            from dltool.rundir import CONFIG, RunDir

            run = RunDir.open(resume)
            use_backend(run.recorded_backend(), str(run.path / CONFIG))
            from dltool.training import resume_training

            result = resume_training(resume, console=_out())
        views.final_metrics(_out(), result.path, result.metrics)
        return
    overrides = [*(overrides or []), *(["training.profile=true"] if profile else [])]
    if not config_paths:
        raise UsageError("give an experiment file (dltool train exp.yaml), or --resume RUN_FOLDER")
    if len(config_paths) == 1 and not smoke:
        with handling_signals():
            result = _train_one(config_paths[0], runs_dir, name, overrides, smoke=False)
        views.final_metrics(_out(), result.path, result.metrics)
        return
    _train_many(config_paths, runs_dir, name, overrides, smoke)


def _train_one(
    path: Path, runs_dir: Path, name: str | None, overrides: list[str], smoke: bool
) -> "RunResult":
    """One ``dltool train`` of one file: the Python API's :func:`dltool.api.train`."""
    from dltool.api import train  # imports TensorFlow only once the config is valid

    return train(path, overrides, runs_dir=runs_dir, name=name, smoke=smoke, console=_out())


def _train_many(
    paths: list[Path],
    runs_dir: Path,
    name: str | None,
    overrides: list[str],
    smoke: bool,
    show_folders: bool = True,
) -> None:
    """Train configs one after another; a failure is reported and the next one still runs.

    Each run's own final metrics and folder are printed as it ends (not for the
    temporary folders of `dltool smoke`), then a summary row per config.
    """
    from dltool import views
    from dltool.rundir import RunDir

    outcomes: list[dict[str, Any]] = []
    with handling_signals():  # one handler for the whole batch: Ctrl-C between runs counts too
        for path in paths:
            try:
                raise_if_requested()
                result = _train_one(path, runs_dir, name, overrides, smoke)
                missing = RunDir(result.path).missing_files()
                if missing:
                    raise RunFolderIncomplete(f"{result.path}: missing {', '.join(missing)}")
            except Exception as error:  # reported; the next file still runs
                outcomes.append({"path": path, "exit": report(error)})
                continue
            if show_folders:
                views.final_metrics(_out(), result.path, result.metrics)
            test = result.metrics.get("test", {})
            outcomes.append({"path": path, "exit": 0, "metrics": test, "folder": result.path})
    views.batch_summary(_out(), "smoke runs" if smoke else "runs", outcomes, show_folders)
    first_failure = next((o["exit"] for o in outcomes if o["exit"]), 0)
    if first_failure:
        raise typer.Exit(first_failure)


@app.command()
def reproduce(
    run_path: Annotated[Path, typer.Argument(help="A completed run folder.", show_default=False)],
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir", help="Parent folder of the new run (default: the folder that holds RUN)."
        ),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            "--tolerance",
            min=0.0,
            help="Largest absolute difference allowed per metric (default: 0 with "
            "training.deterministic, else 0.01).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a run's recorded config again (same seed) as a new run, and compare the metrics.

    The data is checked by fingerprint first: a missing or changed file is refused (exit 2).
    Exit 0 when every metric is within the tolerance, 3 otherwise.
    """
    from dltool import views
    from dltool.reproduce import reproduce as reproduce_run

    with handling_signals():
        result = reproduce_run(run_path, runs_dir or run_path.parent, tolerance, _out())
    views.reproduction(_out(), result)
    result.check()


@app.command("continue")
def continue_command(
    run_path: Annotated[Path, typer.Argument(help="A completed run folder.", show_default=False)],
    epochs: Annotated[
        int,
        typer.Option("--epochs", min=1, max=100_000, help="Epochs to train on top of the run's."),
    ],
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir", help="Parent folder of the new run (default: the folder that holds RUN)."
        ),
    ] = None,
) -> None:
    """Train a completed run N more epochs as a new run, from its model and optimizer state.

    Epoch numbers carry on and learning-rate schedules continue; the new run.json names
    its parent. The data is checked by fingerprint first, as for reproduce.
    """
    from dltool import views

    with handling_signals():
        from dltool.backend import use_backend
        from dltool.rundir import CONFIG, RunDir

        run = RunDir.open(run_path)
        use_backend(run.recorded_backend(), str(run.path / CONFIG))
        from dltool.training import continue_training

        result = continue_training(run_path, epochs, runs_dir or run_path.parent, _out())
    views.final_metrics(_out(), result.path, result.metrics)


@app.command()
def smoke(
    config_paths: ConfigsArg,
    runs_dir: Annotated[
        Path | None,
        typer.Option("--runs-dir", help="Keep the smoke runs here (default: a temporary folder)."),
    ] = None,
    overrides: SetOption = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Download datasets that are not in Keras' cache (default: skip their configs).",
        ),
    ] = False,
) -> None:
    """Check that configs train: 1 epoch on a small slice each; non-zero exit if any fails.

    The way to guard configs in CI: `dltool smoke configs/*.yaml`.
    """
    import tempfile

    if not download:
        config_paths = [path for path in config_paths if not _skipped_for_download(path, overrides)]
        if not config_paths:
            return
    if runs_dir is not None:
        _train_many(config_paths, runs_dir, None, overrides or [], smoke=True)
        return
    with tempfile.TemporaryDirectory(prefix="dltool-smoke-") as scratch:
        _train_many(
            config_paths, Path(scratch), None, overrides or [], smoke=True, show_folders=False
        )


def _skipped_for_download(path: Path, overrides: list[str] | None) -> bool:
    """True, with a line saying so, for a config whose dataset must be downloaded first."""
    from dltool.config import load_config
    from dltool.data.builtin import download_needed, keras_cache

    try:
        data = load_config(path, overrides).data
    except DltoolError:
        return False  # training reports the problem in its turn
    name = getattr(data, "name", None) if data.source == "builtin" else None
    url = download_needed(name) if name else None
    if url is not None:
        _out().print(
            escape(
                f"skipped {path}: data.name {name!r} is not in {keras_cache()} and would be "
                f"downloaded from {url} (add --download to download it, or place the file there)"
            )
        )
    return url is not None


@app.command()
def validate(
    config_paths: Annotated[
        list[Path], typer.Argument(help="Experiment files to check.", show_default=False)
    ],
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only problems, not resolved configs.")
    ] = False,
    overrides: SetOption = None,
) -> None:
    """Check experiment files without training; print each resolved config or every problem."""
    from dltool.config import load_config, resolved_dict
    from dltool.errors import ConfigError

    problems: list[str] = []
    for path in config_paths:
        try:
            config = load_config(path, overrides)
        except ConfigError as error:
            problems += error.lines
            continue
        if quiet:
            continue
        if len(config_paths) > 1:
            typer.echo(f"# {path}")
        typer.echo(yaml.safe_dump(resolved_dict(config), sort_keys=False).rstrip())
    if problems:
        raise ConfigError(*problems)


@app.command()
def sweep(
    target: Annotated[
        Path | None,
        typer.Argument(
            help="A sweep file (YAML), or with --resume an earlier sweep's folder.",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j", min=1, help="Trials trained at once, each in its own process."
        ),
    ] = 1,
    runs_dir: RunsDirOption = Path("runs"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a sweep folder; finished trials are kept.")
    ] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="Keep the study in PostgreSQL (postgresql://USER@HOST:PORT/DB), shared by many machines.",
            show_default=False,
        ),
    ] = None,
    join: Annotated[
        str | None,
        typer.Option(
            "--join",
            metavar="STUDY",
            help="Add workers to a study in --storage (run on any machine with the same files).",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STUDY",
            help="Show every trial of a study in --storage, from every machine; write its tables.",
            show_default=False,
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run each trial as a task on a Ray cluster: HOST:PORT of its head, auto, or local (a private Ray here). Needs pip install 'dltool[ray]'.",
            show_default=False,
        ),
    ] = None,
    cpus_per_trial: Annotated[
        float,
        typer.Option(
            "--cpus-per-trial", min=0, help="With --ray: CPUs Ray reserves for each trial."
        ),
    ] = 1.0,
    gpus_per_trial: Annotated[
        float,
        typer.Option(
            "--gpus-per-trial",
            min=0,
            help="With --ray: GPUs Ray gives each trial (0.5: two share one).",
        ),
    ] = 0.0,
) -> None:
    """Train every variant a sweep file describes; trials.csv compares them, best.json names the best."""
    _check_sweep_arguments(target, resume, storage, join, status)
    options = _ray_options(ray, cpus_per_trial, gpus_per_trial, jobs, status)
    from dltool import sweep as sweeps

    if status is not None:
        assert storage is not None  # noqa: S101  (checked above)
        code = sweeps.show_status(status, storage, runs_dir, _out())
    else:
        from dltool.sweep.cluster import connected

        # connected first: a cluster that cannot be reached leaves no sweep folder behind
        with connected(options), sweeps.open_sweep(target, runs_dir, resume, storage, join) as directory:  # fmt: skip
            code = sweeps.run(directory, jobs, _out(), options)
    if code:
        raise typer.Exit(int(code))


def _check_sweep_arguments(
    target: Path | None, resume: bool, storage: str | None, join: str | None, status: str | None
) -> None:
    """Raises: UsageError: the options of ``dltool sweep`` do not go together."""
    given = [name for name, value in (("--join", join), ("--status", status)) if value is not None]
    if len(given) > 1 or (given and (target is not None or resume)):
        raise UsageError(
            "dltool sweep: give one of SWEEP.yaml, SWEEP_FOLDER --resume, --join STUDY and --status STUDY"
        )
    if given and storage is None:
        raise UsageError(f"{given[0]} needs --storage postgresql://USER@HOST:PORT/DATABASE")
    if not given and target is None:
        raise UsageError("give a sweep file (dltool sweep SWEEP.yaml), or --join/--status STUDY --storage URL")  # fmt: skip
    if storage is not None:
        from dltool.sweep.study import require_database_url

        require_database_url(storage)


def _ray_options(address: str | None, cpus: float, gpus: float, jobs: int, status: str | None) -> Any:  # fmt: skip
    """``--ray``'s options (None without it), checked before any folder is made.

    Raises:
        UsageError: they do not go with the other options, or Ray is not installed.
    """
    if address is None:
        if cpus != 1.0 or gpus:
            raise UsageError("--cpus-per-trial and --gpus-per-trial go with --ray ADDRESS")
        return None
    if status is not None:
        raise UsageError("--status reads the study and trains nothing: it takes no --ray")
    if jobs != 1:
        raise UsageError(
            f"--ray: the cluster's room sets how many trials run at once (received --jobs {jobs}; "
            "expected no --jobs, and --cpus-per-trial / --gpus-per-trial for each trial's share)"
        )
    if cpus == 0 and gpus == 0:
        raise UsageError("--ray: a trial needs some room (received --cpus-per-trial 0 and no --gpus-per-trial)")  # fmt: skip
    from dltool.sweep.cluster import RayOptions, require_ray

    require_ray()
    return RayOptions(address, cpus, gpus)


RunArg = Annotated[
    Path,
    typer.Argument(
        help="A run folder (or the model.keras inside one), or an export folder (or its model).",
        show_default=False,
    ),
]


def _open_for_use(run_path: Path) -> Any:
    """The run or export that predict and evaluate use, with a one-line warning on stderr
    when its model file is no longer the one training saved (or export checked)."""
    from dltool.predict import open_run

    run = open_run(run_path)
    changed = run.changed()
    if changed:
        _err().print(f"[yellow]warning[/yellow]: {escape(changed)}; its results may differ from the run's")  # fmt: skip
    from dltool.backend import import_keras

    import_keras()  # quietly, before the model is loaded
    return run


@app.command()
def predict(
    run_path: RunArg,
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            help="CSV (feature columns by name), .npy/.npz, an image file or a folder of images.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", help="CSV to write (default: RUN/predictions/<time>.csv)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Examples per model call.")
    ] = 1024,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --output.")
    ] = False,
) -> None:
    """Predict new inputs with a finished run (or an export); one CSV row per example, with class names."""
    from dltool import views

    run = _open_for_use(run_path)
    from dltool.predict import predict_file

    result = predict_file(run, input_path, output, batch_size, overwrite)
    views.predictions(_out(), result)


@app.command()
def evaluate(
    run_path: RunArg,
    data_path: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Labelled data: CSV with the label column, .npz with x and y, or a folder of class sub-folders.",
            show_default=False,
        ),
    ],
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Examples per model call.")
    ] = 1024,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="COLUMN",
            help="The label column of a CSV (default: the run's data.target, else 'label').",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score a finished run (or an export) on labelled data: loss, metrics, per-class report, confusion matrix."""
    from dltool import views

    run = _open_for_use(run_path)
    from dltool.predict import evaluate_file

    result = evaluate_file(run, data_path, batch_size, target)
    views.evaluation(_out(), result, data_path)


@app.command()
def export(
    run_path: Annotated[Path, typer.Argument(help="A completed run folder.", show_default=False)],
    format_name: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="saved_model, tflite or onnx (onnx and tflite need dltool's export extra).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Folder to write (default: RUN/exports/FORMAT)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output folder.")
    ] = False,
) -> None:
    """Export a run's model for another runtime, checked against model.keras on the test split."""
    from dltool import views
    from dltool.export import export_run

    views.export_result(_out(), export_run(run_path, format_name, output, overwrite))


@app.command()
def data(
    config_path: ConfigArg,
    out: Annotated[Path, typer.Option("--out", help="New or empty folder to write the data into.")],
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            min=0,
            help="Seed for the splits when the config sets none (default 0). A run's own "
            "RUN/config.yaml records the seed it used.",
        ),
    ] = None,
) -> None:
    """Write the dataset a config trains on (CSV for tables, PNG folders for images) and describe it."""
    from dltool import views
    from dltool.config import load_config
    from dltool.data import load_dataset, naming_config
    from dltool.data.export import export_dataset, seed_for_splits

    config = load_config(config_path)
    split_seed, note = seed_for_splits(config, seed, config_path)
    if note:
        _err().print(note, highlight=False)
    config = config.model_copy(update={"seed": split_seed})
    with naming_config(str(config_path)):
        dataset = load_dataset(config.data, split_seed, config.task)
    target = getattr(config.data, "target", "label")
    result = export_dataset(dataset, out, target, source=config.data.source)
    views.dataset(_out(), config, dataset, result)
    for line in result["left_out"]:
        _err().print(f"note: {escape(line)} (it failed to decode: not written)", highlight=False)


@app.command("report")
def report_command(
    run_paths: Annotated[
        list[Path],
        typer.Argument(
            help="A run folder, or several to compare (RUN RUN ...).", show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            help="Page to write (default: RUN/report.html; for several runs "
            "comparison-<time>.html here).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a run's HTML report again (e.g. for an older run), or one page comparing runs."""
    from dltool import views
    from dltool.report import report_target

    written = report_target(run_paths, output)
    views.line(_out(), ("report", "green"), " ", str(written))


@app.command()
def schema(
    sweep: Annotated[
        bool, typer.Option("--sweep", help="The sweep file's schema instead of the experiment's.")
    ] = False,
) -> None:
    """Print the JSON Schema of the experiment file, for editor completion and checking.

    Save it and point a config at it: `dltool schema > dltool.schema.json`, then first line
    `# yaml-language-server: $schema=dltool.schema.json` (VS Code's YAML extension).
    """
    from dltool.editor_schema import schema_text

    typer.echo(schema_text("sweep" if sweep else "experiment"), nl=False)


@app.command()
def layers() -> None:
    """List the layer types a config can use, with their parameters and defaults."""
    from dltool import views

    views.layer_registry(_out())


runs_app = typer.Typer(
    help="List runs with their status and metrics; compare runs.", no_args_is_help=False
)
app.add_typer(runs_app, name="runs")


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    runs_dir: RunsDirOption = Path("runs"),
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            metavar="METRIC",
            help="Best first by a metric, e.g. test.accuracy or validation.loss.",
        ),
    ] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order.")] = False,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            metavar="KEY=VALUE",
            help="Keep runs where KEY=VALUE (status, name, a config key).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the runs in a runs folder: status, date, duration, parameters, metrics."""
    if ctx.invoked_subcommand is not None:
        return
    from dltool.runs import list_runs, select

    chosen = select(list_runs(runs_dir), filters or [], sort, reverse)
    if as_json:
        import json

        typer.echo(json.dumps([r.summary() for r in chosen], indent=2))
        return
    from dltool import views

    views.runs_table(_out(), [r.summary() for r in chosen], runs_dir)


@runs_app.command("compare")
def runs_compare(
    run_paths: Annotated[
        list[Path], typer.Argument(help="Two or more run folders.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Also write the comparison as an HTML page, with the curves overlaid.",
        ),
    ] = None,
) -> None:
    """Show how runs differ: config keys that changed, and metrics side by side."""
    from dltool import views
    from dltool.errors import InputError
    from dltool.runs import compare, read_run

    if len(run_paths) < 2:
        raise InputError("runs compare: give at least two run folders")
    result = compare([read_run(path) for path in run_paths])
    if html is not None:
        from dltool.report import write_comparison

        write_comparison(list(run_paths), html)
    if as_json:
        import json

        typer.echo(json.dumps(result, indent=2))
        return
    views.comparison(_out(), result)


# Libraries whose exit handlers must run (a private Ray cluster to stop): with one of them
# loaded, dltool leaves through Python's normal shutdown.
NEEDS_SHUTDOWN = ("ray",)


def leave_now(code: Any) -> None:
    """End the process at once, with ``code``, once a command has succeeded.

    Python's normal shutdown frees every module's objects one by one: after TensorFlow
    has run that is 0.5-1 s on a quiet 2-core machine (several seconds under load), and
    even `dltool validate` spends about 70 ms in it (pydantic's validators), a seventh of
    its whole run, for nothing dltool needs. Every file dltool writes is closed (and
    renamed into place) before its command returns, locks are released by the kernel,
    and the two output streams are flushed here. Exit handlers (``atexit``: logging's,
    weakref finalizers, a coverage tool's) run first, except in a process that loaded
    TensorFlow, where none runs (TensorFlow's own are part of the slow shutdown). Only a
    command that succeeded leaves this way (a failed or interrupted run may have buffers,
    a TensorBoard writer's say, that only Python's shutdown flushes); a process with a
    live thread that is not a daemon (dltool's idle image-decoding pool is closed first)
    or a live ``multiprocessing`` child, or one that loaded a library whose shutdown must
    run in full (:data:`NEEDS_SHUTDOWN`), leaves normally.
    """
    import os
    import sys
    import threading

    if code not in (None, 0):  # a failed or interrupted command leaves the usual way
        return
    if any(name in sys.modules for name in NEEDS_SHUTDOWN):
        return
    rows = sys.modules.get("dltool.data.rows")  # loaded with image data (not imported here: NumPy)
    if rows is not None:
        rows.close_pool()  # its idle decoding threads, which Python's shutdown would join
    if any(not thread.daemon for thread in threading.enumerate() if thread is not threading.main_thread()):  # fmt: skip
        return  # Python's shutdown would wait for it
    if "multiprocessing" in sys.modules:
        import multiprocessing

        if multiprocessing.active_children():
            return
    if "tensorflow" not in sys.modules:
        import atexit

        atexit._run_exitfuncs()  # what Python's shutdown runs first; its teardown is what costs
    if "logging" in sys.modules:  # its handlers' buffers (atexit ran this already if allowed)
        sys.modules["logging"].shutdown()
    code = 0
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (`dltool --version >&-`)
            continue
        try:
            stream.flush()
        except BrokenPipeError:  # the reader has gone: nothing more to say
            pass
        except (OSError, ValueError):  # a full disk: Python's own shutdown exits 120 then
            code = 120
    os._exit(code)


def _named_command(args: list[str]) -> str | None:
    """The command (or group) a command line names, if any: its first word that is not an
    option (dltool's own options before it, ``--debug`` and ``--version``, take no value)."""
    return next((arg for arg in args if not arg.startswith("-")), None)


@contextlib.contextmanager
def _only_the_named_command(args: list[str]) -> Iterator[None]:
    """While the block runs, ``app`` holds only the command (or group) that ``args`` names.

    Typer turns every registered command into a click command each time it starts (their
    parameters from the functions' signatures: 10-20 ms for dltool's, a twentieth of
    `dltool validate`); a command line names at most one, and the top-level options before
    it are flags. Without a known name (``--help``, ``--version``, a misspelled command, whose
    error lists the others) every command is built as usual.
    """
    from typer.main import get_command_name

    name = _named_command(args)
    commands = [c for c in app.registered_commands if get_command_name(c.name or c.callback.__name__) == name]  # type: ignore[union-attr]  # fmt: skip
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        yield
        return
    kept = app.registered_commands, app.registered_groups
    app.registered_commands, app.registered_groups = commands, groups
    try:
        yield
    finally:
        app.registered_commands, app.registered_groups = kept


def main() -> None:
    """Console-script entry point."""
    import sys

    try:
        # `dltool layers | head -3`: a reader that stops early takes the rest quietly, exit 0
        with _only_the_named_command(sys.argv[1:]), stdout_may_close():
            app()
    except SystemExit as done:
        for sig in (signal.SIGINT, signal.SIGTERM):  # the command is over: see below
            signal.signal(sig, signal.SIG_IGN)
        leave_now(done.code)
        raise
    finally:
        # The command has ended and said so: a late Ctrl-C (say a third one while a run was
        # stopping) must not print a KeyboardInterrupt traceback while Python shuts down.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
