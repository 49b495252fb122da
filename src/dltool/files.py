"""Reading files: the one place dltool opens a file to read it, and parses CSV, NumPy and images.

Every read starts with :func:`open_regular`: only a regular file is opened. A FIFO
would block ``open()`` and ``read()`` until a writer comes (``dltool runs`` would
hang), and a device such as ``/dev/zero`` never ends (memory grows until
``MemoryError``). The path is checked with ``os.stat`` before it is opened, and it
is opened non-blocking and checked again with ``fstat``, so a FIFO swapped in
between cannot block either.

Files dltool writes itself (run.json, metrics.json, config.yaml) and experiment
files are read whole through :func:`read_limited`, with a size limit. Data files
are checked against the memory they need (:func:`check_fits_memory`).

Training data (:mod:`dltool.data`) and ``predict``/``evaluate`` input
(:mod:`dltool.inputs`) read through the same functions; the caller chooses the
error class (:class:`~dltool.errors.DataError` or :class:`~dltool.errors.InputError`).
No NumPy, pandas or Pillow at module level: ``dltool validate`` and ``runs`` import this.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dltool.errors import DltoolError

if TYPE_CHECKING:
    import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Memory a training table takes per row while pandas parses it: per cell a float64 and a
# float32 copy, plus one Python string for the label (measured: 2M rows x 4 columns, 37 MB,
# peaked at 211 MB; 6M rows x 2 columns, 24 MB, at 592 MB; this estimate gives 328 and 792).
CSV_BYTES_PER_CELL = 16
CSV_BYTES_PER_ROW = 100
CSV_SAMPLE_BYTES = 1_000_000  # read to estimate the row length and the number of columns


class FileRefused(Exception):
    """A file that cannot be read. The message is one line, without the path."""


def resolve_path(value: str | Path, base_dir: Path | None) -> Path:
    """A path written in a config file: ``~`` expanded, then relative to ``base_dir``
    (the config file's folder) unless absolute; the result is absolute, links kept."""
    path = Path(value).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path.absolute()


def open_regular(path: Path, folder_hint: str = "a file") -> IO[bytes]:
    """``path`` opened for binary reading, when it is a regular file.

    Args:
        path: the file.
        folder_hint: what a folder is said not to be: ``"is a folder, not a CSV file"``.

    Raises:
        FileRefused: missing, a folder, not a regular file (FIFO, device, socket), or
            unreadable, in one line without the path.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise _not_regular(path)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as error:
        raise FileRefused("file not found") from error
    except FileRefused as refused:
        if str(refused) == "is a folder":
            raise FileRefused(f"is a folder, not {folder_hint}") from None
        raise
    except OSError as error:
        raise FileRefused(f"cannot be read ({error.strerror or error})") from error
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in after the stat above
        os.close(fd)
        raise FileRefused("not a regular file")
    os.set_blocking(fd, True)  # a regular file: reads never block anyway
    return os.fdopen(fd, "rb")


def _not_regular(path: Path) -> FileRefused:
    return FileRefused("is a folder" if path.is_dir() else "not a regular file")


def read_limited(path: Path, limit: int, folder_hint: str = "a file") -> bytes:
    """The whole of a regular file of at most ``limit`` bytes.

    Raises:
        FileRefused: as :func:`open_regular`, or the file is larger than ``limit``.
    """
    with open_regular(path, folder_hint) as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(limit + 1)  # the file may grow after the fstat
    if max(size, len(data)) > limit:
        raise FileRefused(f"file is {max(size, len(data)):,} bytes; the limit is {limit:,}")
    return data


def available_memory() -> int | None:
    """Bytes a new allocation can get, None if unknown: the least of Linux' MemAvailable,
    what the process's cgroup (v1 or v2) still allows and what its address-space limit
    (RLIMIT_AS, ``ulimit -v``) leaves beside what the process has mapped already.

    A container's memory limit or a ``ulimit -v`` is lower than the machine's free memory;
    an allocation over it fails (``MemoryError``) or the process is killed, so the checks
    before reading data must see it.
    """
    found = [
        bytes_
        for bytes_ in (_meminfo_available(), _cgroup_available(), _address_space_left())
        if bytes_ is not None
    ]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/meminfo", encoding="ascii") as meminfo,
    ):
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


# cgroup v2 and v1: the limit, the usage, and memory.stat's page cache and the part of it that
# is shared memory (tmpfs: not reclaimable)
_CGROUP_V2 = ("memory.max", "memory.current", "file", "shmem")
_CGROUP_V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_cache", "total_shmem")


def _cgroup_available(
    groups_file: Path = Path("/proc/self/cgroup"), mount: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """What this process's cgroups still allow: each limit less its usage, not counting the
    page cache the kernel reclaims before it refuses memory (shared memory counts: tmpfs stays).
    None without a limit.

    cgroup v2 (memory.max, memory.current) and v1 (memory.limit_in_bytes, memory.usage_in_bytes),
    as /proc/self/cgroup names them (a hybrid system lists both). A limit on a parent group binds
    too: every group from the process's own up to the mount's root counts, the least left wins.
    A container that names the host's group but mounts its own at the root is read at the root.
    A group whose files cannot be read is left out.
    """
    try:
        lines = groups_file.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    left: list[int] = []
    for line in lines:
        number, controllers, group = [*line.split(":", 2), "", ""][:3]
        if number == "0" and not controllers:
            names, root = _CGROUP_V2, mount
        elif "memory" in controllers.split(","):
            names, root = _CGROUP_V1, mount / "memory"
        else:
            continue
        own = root / group.strip("/")
        if not (own / names[0]).is_file():
            own = root
        for folder in (own, *(parent for parent in own.parents if parent.is_relative_to(root))):
            with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
                bytes_ = _cgroup_left(folder, *names)
                if bytes_ is not None:
                    left.append(bytes_)
    return min(left) if left else None


def _cgroup_left(folder: Path, limit_file: str, usage_file: str, cache: str, shared: str) -> int | None:  # fmt: skip
    limit = (folder / limit_file).read_text(encoding="ascii").strip()
    if not limit.isdigit() or int(limit) >= 1 << 62:  # "max" (v2) or about 2**63 (v1): none
        return None
    used = int((folder / usage_file).read_text(encoding="ascii"))
    reclaimable = 0  # where memory.stat cannot be read, the limit still counts (no cache off)
    with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
        stat = dict(line.split(" ", 1) for line in (folder / "memory.stat").read_text(encoding="ascii").splitlines())  # fmt: skip
        reclaimable = max(int(stat.get(cache, 0)) - int(stat.get(shared, 0)), 0)
    return max(int(limit) - used + reclaimable, 0)


def _address_space_left() -> int | None:
    """RLIMIT_AS less the process's mapped address space (VmSize); None without a limit, or
    where there is no such limit (Windows has no ``resource`` module)."""
    try:
        import resource
    except ImportError:
        return None
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY:
        return None
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii") as status,
    ):
        for line in status:
            if line.startswith("VmSize:"):
                return max(limit - int(line.split()[1]) * 1024, 0)
    return None


def check_fits_memory(path: Path, needed: int, error: type[DltoolError], advice: str = "") -> None:
    """Refuse a data file that needs more memory to read than is available, before reading.

    Args:
        path: the file.
        needed: bytes of memory reading it takes (an estimate).
        error: the class to raise.
        advice: what to do instead, appended to the message.

    Raises:
        error: ``needed`` exceeds the available memory.
    """
    available = available_memory()
    if available is not None and needed > available:
        from dltool.messages import size_in_bytes  # pydantic: only when it is needed

        raise error(
            f"{path}: the file is {size_in_bytes(file_size(path))}; reading it needs about "
            f"{size_in_bytes(needed)} of memory and {size_in_bytes(available)} is available{advice}"
        )


def file_size(path: Path) -> int:
    """A file's size in bytes; 0 when it cannot be read (its reader reports why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the reader reports a missing or unreadable file


def array_memory(path: Path) -> int:
    """Memory to read a NumPy file and convert it to float32: about twice its size."""
    return 2 * file_size(path)


def table_memory(path: Path, delimiter: str = ",") -> int:
    """Memory to read a CSV file whole, estimated from its first rows (its text, at least twice).

    Reads at most CSV_SAMPLE_BYTES; a missing, special or unreadable file gives 0 (the
    reader reports it).
    """
    size = file_size(path)
    try:
        with open_regular(path) as handle:
            sample = handle.read(CSV_SAMPLE_BYTES)
    except (FileRefused, OSError):
        return 0
    lines = sample.count(b"\n")
    if lines == 0:  # one long line so far: the text itself is all we know
        return 2 * size
    rows = size * lines // len(sample)
    cells = max(
        1, sample[: sample.index(b"\n")].count(delimiter.encode()) + 1
    )  # the header's columns
    return max(2 * size, rows * (cells * CSV_BYTES_PER_CELL + CSV_BYTES_PER_ROW))


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


# ---------------------------------------------------------------------------- csv


def csv_problem(path: Path, problem: BaseException, error: type[DltoolError]) -> DltoolError:
    """The one-line report for a CSV file pandas could not open or tokenize."""
    import pandas as pd

    if isinstance(problem, FileRefused):
        return error(f"{path}: {problem}")
    if isinstance(problem, UnicodeDecodeError):
        return error(f"{path}: not UTF-8 text (save it as UTF-8 CSV)")
    if isinstance(problem, pd.errors.EmptyDataError):
        empty = path.stat().st_size == 0
        what = "the file is empty" if empty else "line 1 is blank"
        return error(f"{path}: no header line ({what}; expected column names on line 1)")
    if isinstance(problem, pd.errors.ParserWarning):  # first data row longer than the header
        return error(
            f"{path}: line 2: more fields than the header has columns "
            f"(check data.delimiter and quoting)"
        )
    if isinstance(problem, pd.errors.ParserError):
        reason = one_line(problem).removeprefix("Error tokenizing data. C error: ")
        return error(f"{path}: not a readable CSV file ({reason})")
    return error(f"{path}: cannot be read ({type(problem).__name__}: {one_line(problem)})")


def _csv_failures() -> tuple[type[BaseException], ...]:
    import pandas as pd

    # pandas' EmptyDataError and ParserError are ValueErrors
    return (FileRefused, OSError, UnicodeDecodeError, ValueError, pd.errors.ParserWarning)


def read_csv(path: Path, error: type[DltoolError], **options: Any) -> Any:
    """``pandas.read_csv`` of a regular file, every failure one ``error`` line.

    Only an empty cell is missing (never 'NA' or 'null'); pandas' ParserWarning (a
    first data row longer than the header) is an error. ``options`` go to pandas.
    """
    import pandas as pd

    try:
        with _text(path) as handle, warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(handle, **_csv_options(options))
    except _csv_failures() as problem:
        raise csv_problem(path, problem, error) from problem


def csv_chunks(path: Path, error: type[DltoolError], rows: int, **options: Any) -> Iterator[Any]:
    """``pandas.read_csv`` in chunks of ``rows`` rows, failures as in :func:`read_csv`.

    The file is opened (and refused) at the first ``next()``.
    """
    import pandas as pd

    try:
        with (
            _text(path) as handle,
            pd.read_csv(handle, chunksize=rows, **_csv_options(options)) as reader,
        ):
            yield from reader
    except _csv_failures() as problem:
        raise csv_problem(path, problem, error) from problem


def _text(path: Path) -> io.TextIOWrapper:
    """A regular file as UTF-8 text; ours to close (a wrapper pandas made would leak)."""
    return io.TextIOWrapper(open_regular(path, "a CSV file"), encoding="utf-8", newline="")


def _csv_options(options: dict[str, Any]) -> dict[str, Any]:
    return {"keep_default_na": False, "na_values": [""], **options}


# -------------------------------------------------------------------------- numpy

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # numpy's own test for an .npz


def magic(path: Path, error: type[DltoolError], folder_hint: str = "a NumPy file") -> bytes:
    """The first 6 bytes of a regular file."""
    try:
        with open_regular(path, folder_hint) as handle:
            return handle.read(6)
    except FileRefused as refused:
        raise error(f"{path}: {refused}") from refused


def pickled(path: Path, error: type[DltoolError], name: str | None = None) -> DltoolError:
    what = f"array {name!r} " if name else ""
    return error(
        f"{path}: {what}holds Python objects (pickled data), which dltool never loads "
        f"(save plain numbers, e.g. np.save(path, x.astype('float32')))"
    )


def _is_pickle_refusal(problem: BaseException) -> bool:
    """numpy's refusal of an object array: "allow_pickle", or with a memory map "Python objects"."""
    text = str(problem)
    return isinstance(problem, ValueError) and ("allow_pickle" in text or "Python objects" in text)


def load_npy(path: Path, error: type[DltoolError], memory_map: bool = False) -> np.ndarray:
    """One .npy array, never unpickled; ``memory_map`` reads it lazily (for predict)."""
    import numpy as np

    start = magic(path, error)
    if start != NPY_MAGIC:
        # numpy would call this "pickled data"; it is simply not an .npy file.
        zipped = " (it is a zip archive: an .npz?)" if start.startswith(b"PK") else ""
        raise error(f"{path}: not a NumPy .npy file{zipped} (it does not start like one)")
    try:
        if memory_map:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with open_regular(path) as handle:  # our handle: closed even when numpy fails
            return np.asarray(np.load(handle, allow_pickle=False))
    except Exception as problem:  # a damaged file fails anywhere in numpy's reader
        if _is_pickle_refusal(problem):
            raise pickled(path, error) from problem
        raise error(f"{path}: not a readable .npy file ({one_line(problem)})") from problem


@contextlib.contextmanager
def open_npz(path: Path, error: type[DltoolError]) -> Iterator[Any]:
    """An .npz archive (``numpy.lib.npyio.NpzFile``), never unpickled; closed on exit."""
    import numpy as np

    if magic(path, error)[:4] not in ZIP_MAGICS:
        raise error(f"{path}: not a NumPy .npz archive (it does not start like a zip file)")
    try:
        with open_regular(path) as handle, np.load(handle, allow_pickle=False) as archive:
            yield archive
    except DltoolError:
        raise
    except Exception as problem:  # a damaged archive fails in zipfile, zlib or numpy
        raise error(f"{path}: not a readable .npz archive ({one_line(problem)})") from problem


def npz_member(archive: Any, key: str, path: Path, error: type[DltoolError]) -> np.ndarray:
    """One array of an open .npz archive."""
    import numpy as np

    try:
        return np.asarray(archive[key])
    except Exception as problem:  # a damaged member fails in zlib, zipfile or numpy
        if _is_pickle_refusal(problem):
            raise pickled(path, error, key) from problem
        raise error(f"{path}: array {key!r} is not readable ({one_line(problem)})") from problem


# ------------------------------------------------------------------------- images


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with
PNG_TAIL = 4096  # bytes at a PNG's end searched for IEND (Pillow's verify accepts trailing bytes)


def image_problem(file: Path, check_suffix: bool = True, thorough: bool = True) -> str | None:
    """Why ``file`` cannot be used as an image (one line, without the path), or None.

    Pillow opens it and, when ``thorough``, verifies it (verify reads the file
    through, checking its structure, PNG checksums included). Otherwise only the
    header is parsed and a PNG must end with its IEND chunk: about 10x cheaper, and a
    truncated PNG is still caught here; damage inside a file is found when it is
    decoded (the training pre-scan's choice: decoding reports every such file).
    Nothing is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    suffix = file.suffix.lower()
    if check_suffix and suffix not in IMAGE_SUFFIXES:
        shown = repr(suffix) if suffix else "none"
        return f"not an image file (extension {shown}; expected one of {', '.join(IMAGE_SUFFIXES)})"  # fmt: skip
    try:
        with open_regular(file, "an image file") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return "empty file (0 bytes)"
            with Image.open(handle) as image:
                if thorough:
                    image.verify()
                elif image.format == "PNG":  # IEND near the end: some tools append a few bytes
                    handle.seek(-min(PNG_TAIL, os.fstat(handle.fileno()).st_size), os.SEEK_END)
                    if PNG_END not in handle.read():
                        return "not a readable image (a truncated PNG: it does not end with IEND)"
    except FileRefused as refused:
        return str(refused)
    except UnidentifiedImageError:
        return "not a readable image (Pillow does not recognise its contents)"
    except OSError as problem:
        if problem.strerror:  # the operating system refused (permissions, I/O)
            return f"cannot be read ({problem.strerror})"
        return unreadable_image(problem)
    except Exception as problem:  # Pillow raises various types for damaged files
        return unreadable_image(problem)
    return None


def unreadable_image(problem: Exception) -> str:
    text = one_line(problem)
    return f"not a readable image ({type(problem).__name__}{': ' + text if text else ''})"


def read_image(path: Path, image_size: tuple[int, int], color_mode: str) -> tuple[np.ndarray, bool]:
    """Pixels as float32 (height, width, channels) in 0..255, and whether it was resized.

    Raises:
        FileRefused / OSError / ValueError: the file cannot be read (callers report the path).
    """

    pixels, resized = read_pixels(path, image_size, color_mode)
    return pixels.astype("float32"), resized


def read_pixels(
    path: Path, image_size: tuple[int, int], color_mode: str
) -> tuple[np.ndarray, bool]:
    """Pixels as uint8 (height, width, channels), and whether it was resized: converted to
    ``color_mode`` (Pillow ``L`` or ``RGB``), then resized bilinearly if its size differs.

    Raises:
        FileRefused / OSError / ValueError: the file cannot be read (callers report the path).
    """
    import numpy as np
    from PIL import Image

    mode = "L" if color_mode == "grayscale" else "RGB"
    with open_regular(path, "an image file") as handle, Image.open(handle) as image:
        converted = image if image.mode == mode else image.convert(mode)
        height, width = image_size
        resized = converted.size != (width, height)
        if resized:
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted)
    return (pixels[..., None] if pixels.ndim == 2 else pixels), resized
