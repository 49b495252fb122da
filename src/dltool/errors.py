"""Errors dltool reports to users, and the exit codes they map to.

Every problem a user can cause (a bad config, a missing file, bad data) is a
:class:`DltoolError` subclass. The CLI prints ``str(error)`` (one line per
problem) on stderr and exits with ``error.exit_code``; it never shows a
traceback unless ``--debug`` is given.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0  # success
    INTERNAL = 1  # a bug in dltool: please report it with --debug output
    REFUSED = 2  # a config or input was refused before any run folder was made
    TRAINING_FAILED = 3  # training started but could not finish (e.g. non-finite loss), or dltool reproduce's new run differs beyond the tolerance
    IO_FAILURE = 4  # the run folder could not be written (disk full, permissions)
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class DltoolError(Exception):
    """Base class of every error shown to the user as plain lines."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines: list[str] = list(lines)


class ConfigError(DltoolError):
    """The experiment file (or an override) is invalid. One line per problem."""

    exit_code = ExitCode.REFUSED


class DataError(DltoolError):
    """The data a config points at cannot be used (missing, malformed, inconsistent)."""

    exit_code = ExitCode.REFUSED


class InputError(DltoolError):
    """A command-line argument or input file is unusable (e.g. a missing run folder)."""

    exit_code = ExitCode.REFUSED


class ExportError(DltoolError):
    """An export could not be written or failed its check; nothing was kept."""

    exit_code = ExitCode.REFUSED


class TrainingError(DltoolError):
    """Training started but failed (non-finite loss, a shape error Keras found late)."""

    exit_code = ExitCode.TRAINING_FAILED


class NotReproduced(DltoolError):
    """``dltool reproduce`` trained the run again and its metrics differ beyond the tolerance."""

    exit_code = ExitCode.TRAINING_FAILED


class RunDirError(DltoolError):
    """The run folder could not be created or written."""

    exit_code = ExitCode.IO_FAILURE


class UsageError(DltoolError):
    """The command line itself is wrong (a missing or conflicting argument)."""

    exit_code = ExitCode.REFUSED


class RunFolderIncomplete(DltoolError):
    """A smoke run finished but its run folder lacks files a run must have."""

    exit_code = ExitCode.TRAINING_FAILED


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (checkpoint, mark the run), exit code 143."""
