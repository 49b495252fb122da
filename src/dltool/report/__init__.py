"""HTML reports: one self-contained page per run, and one comparing runs.

No TensorFlow and no plotting library: the pages are HTML, inline SVG and a few lines of
JavaScript (see :mod:`.charts` for why), built from a run folder's files alone, so
``dltool report`` works on any run folder, also one copied from another machine.

The package: :mod:`.html` (escaping, tables, the page, its style and script),
:mod:`.charts` (SVG charts, PNG thumbnails), :mod:`.run` (a run's report),
:mod:`.compare` (several runs), :mod:`.sweep` (a sweep's trials).
"""

from __future__ import annotations

from pathlib import Path

from dltool.errors import InputError
from dltool.report.compare import write_comparison
from dltool.report.run import write_run_report
from dltool.report.sweep import is_sweep_folder, write_sweep_report
from dltool.rundir import RUN_JSON

__all__ = ["report_target", "run_folder_of", "write_comparison", "write_run_report", "write_sweep_report"]  # fmt: skip


def run_folder_of(path: Path) -> Path:
    """The run folder ``path`` names: the folder itself, or a file inside it (``RUN/model.keras``).

    Raises:
        InputError: neither is a run folder.
    """
    if path.is_file() and (path.parent / RUN_JSON).is_file():
        return path.parent
    if not path.exists():
        raise InputError(f"{path}: no such run folder")
    if not (path / RUN_JSON).is_file():
        raise InputError(f"{path}: not a dltool run folder (no {RUN_JSON})")
    return path


def report_target(folders: list[Path], output: Path | None) -> Path:
    """Write the report of one run or one sweep (into its folder, or ``output``) or the
    comparison of several runs (into ``output``, default ``comparison-<time>.html`` here);
    returns the page.

    Raises:
        InputError: a path is not a run folder.
    """
    from datetime import datetime

    from dltool.rundir import claim_name, write_text

    if len(folders) == 1 and folders[0].is_dir() and is_sweep_folder(folders[0]):
        if output is None:
            return write_sweep_report(folders[0])
        from dltool.report.sweep import SweepFiles, sweep_page

        write_text(output, sweep_page(SweepFiles(folders[0])))
        return output
    runs = [run_folder_of(path) for path in folders]
    if len(runs) == 1:
        if output is None:
            return write_run_report(runs[0])
        from dltool.report.run import read_run_files, run_page

        write_text(output, run_page(read_run_files(runs[0])))
        return output
    if output is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        output = claim_name(Path.cwd(), f"comparison-{stamp}", lambda p: not p.exists(), ".html")
    return write_comparison(runs, output)
