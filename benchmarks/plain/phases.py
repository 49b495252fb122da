"""Phase timing for the plain-Keras scripts: the phases of dltool's run.json ``timings``.

Each script ends by printing one JSON line, which benchmarks/compare.py reads::

    {"seconds": {"import": s, "data": s, "build": s, "fit": s, "evaluate": s, "save": s},
     "epochs": n, "train_examples": n}

Phases as in dltool: import = importing Keras (TensorFlow); data = load and split;
build = build, adapt and compile the model; fit; evaluate = evaluate and predict;
save = write the model. Standard library only: it adds nothing measurable to start-up.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator


class Phases:
    """``with phase("fit"): ...`` adds the block's seconds to ``seconds["fit"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)

    def report(self, epochs: int, train_examples: int) -> None:
        """Print the JSON line compare.py reads (the script's only stdout)."""
        print(
            json.dumps(
                {"seconds": self.seconds, "epochs": epochs, "train_examples": train_examples}
            )
        )
