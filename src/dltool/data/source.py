"""What every data source's schema shares: :class:`DataSource`, the base of each ``data:`` spec.

Each source module (student, tabular, images, builtin, shapes) defines its spec
class beside its loader; the spec's :meth:`DataSource.load` reads the data, the
way :meth:`dltool.layers.LayerSpec.build` builds a layer. ``config.py`` joins
the specs into one discriminated union on ``source``.

No NumPy here: ``dltool validate`` imports every spec.
"""

from abc import abstractmethod
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo

from dltool.files import resolve_path
from dltool.schema import Strict

if TYPE_CHECKING:
    from dltool.data import Dataset


def _config_path(value: str, info: ValidationInfo) -> str:
    """Relative data paths are relative to the config file's folder; stored absolute."""
    base = (info.context or {}).get("base_dir")
    return str(resolve_path(value, base))


DataPath = Annotated[str, Field(min_length=1), AfterValidator(_config_path)]
ColorMode = Literal["grayscale", "rgb"]
CHANNELS = {"grayscale": 1, "rgb": 3}


class DataSource(Strict):
    """A ``data:`` section: where the examples come from, and how many to validate on."""

    validation_split: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="fraction of training rows held out for validation (seeded, stratified)",
    )

    def input_shape(self) -> list[int] | None:
        """The shape of one example, where the config alone tells it."""
        return None

    def class_count(self) -> int | None:
        """The number of classes, where the config alone tells it."""
        return None

    def held_out_test(self) -> float:
        """The fraction of rows to hold out for testing when the source has no test set."""
        return 0.0

    def source_paths(self) -> list[str]:
        """The files and folders the examples are read from (their contents are fingerprinted,
        :mod:`dltool.fingerprint`): every ``*path`` key that is set. Generated data has none."""
        return [
            value
            for key in type(self).model_fields
            if key.endswith("path") and isinstance(value := getattr(self, key), str)
        ]

    def ahead(self, task: str) -> dict[str, Any]:
        """Work on the source's files that needs no TensorFlow, done in a child process while
        the run imports it (:mod:`dltool.ahead`); :meth:`load` takes it from there (the part
        :data:`dltool.ahead.SOURCE`). Its result must be JSON. Nothing by default."""
        return {}

    @abstractmethod
    def load(self, seed: int, task: str) -> "Dataset":
        """The source's examples, before test and validation rows are held out.

        Args:
            seed: the run's seed (sources that draw random numbers use it).
            task: ``"binary"``, ``"multiclass"`` or ``"regression"``, as the loss implies.

        Raises:
            DataError: the data cannot be used, one line per problem.
        """


Loading = Literal["auto", "memory", "stream"]
# ``loading: auto`` keeps a source's data in memory up to this size and streams it from disk
# beyond (image folders: the decoded float32 pixels; CSV: the file's size; .npy: its values as
# float32). In memory a 2,000-image 128x128 RGB folder (393 MB of pixels) peaked at 2.55 GB
# against plain Keras' 0.98 GB; under this size the in-memory path is the faster one (shapes as
# PNGs, 10 epochs: 9.6 s from memory, 10.6 s streamed; benchmarks/results-data.md).
IN_MEMORY_BYTES = 128_000_000
LOADING_HELP = (
    "how the data is read: memory (all of it, before training), stream (each batch from disk "
    "as training needs it: memory stays flat) or auto (memory up to 128 MB, stream beyond)"
)


class SplitSource(DataSource):
    """A source that may come without a test set: ``test_split`` of its rows are held out."""

    test_split: float = Field(
        0.2,
        gt=0.0,  # every run is tested: metrics.json `test`, predictions.csv, confusion matrix
        lt=1.0,
        description="fraction held out for testing when no test set is given (seeded, stratified)",
    )

    def held_out_test(self) -> float:
        return self.test_split


class StreamingSource(SplitSource):
    """A source whose data may be bigger than memory: ``loading`` says how it is read."""

    loading: Loading = Field("auto", description=LOADING_HELP)

    def loading_mode(self, size: int, what: str) -> tuple[str, str]:
        """("memory" or "stream", why) for ``size`` bytes of ``what`` (e.g. "of pixels")."""
        from dltool.messages import size_in_bytes

        if self.loading != "auto":
            return self.loading, f"data.loading: {self.loading}"
        if size <= IN_MEMORY_BYTES:
            return "memory", f"{size_in_bytes(size)} {what}, at most {size_in_bytes(IN_MEMORY_BYTES)}"  # fmt: skip
        return "stream", f"{size_in_bytes(size)} {what}, over {size_in_bytes(IN_MEMORY_BYTES)}"
