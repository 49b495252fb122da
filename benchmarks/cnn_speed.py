"""Benchmark (issue 17, target 3): the MNIST convnet's training speed, dltool against plain Keras,
and the share of this machine's float32 matmul peak each side reaches.

In one run, each part a whole process of its own:

1. the float32 matmul peak in TensorFlow (``tf.linalg.matmul`` of n x n matrices under
   ``tf.function``, 2 n^3 FLOPs each, best of several), then the model's own ceiling:
   forward + backward of one fixed batch of 128 under ``tf.function``, no optimizer, metrics
   or input pipeline (what TensorFlow's kernels alone reach on this model), and dltool's
   training input pipeline alone (one epoch of batches, no model);
2. ``dltool train configs/mnist_cnn.yaml --set training.epochs=N`` and
   benchmarks/plain/mnist_cnn.py (keras.io's mnist_convnet) alternately, A B A B, on a
   synthetic MNIST-shaped ``mnist.npz`` (60,000 + 10,000 random uint8 images, labels derived
   from the image) in a temporary ``KERAS_HOME``; the steady epochs (all but epoch 1, which
   traces) give each side's training samples/s;
3. FLOPs per training example counted from the layer shapes (see :func:`training_flops`),
   so each side's GFLOP/s and its share of the peak.

    .venv/bin/python benchmarks/cnn_speed.py [--runs 3] [--epochs 3] [--output FILE]
        [--set KEY=VALUE ...] [--env NAME=VALUE ...] [--no-plain]

``--set`` and ``--env`` change the dltool side only (a lever dltool could pull itself:
``--set training.steps_per_execution=1``, ``--env TF_ENABLE_ONEDNN_OPTS=0``); the plain
side always runs as a user runs it. Writes benchmarks/results-cnn.md (about 13 minutes on
2 cores with the defaults). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from timing import cpu_model, run_timed, user_environment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
CONFIG = REPO / "configs" / "mnist_cnn.yaml"
PLAIN = HERE / "plain" / "mnist_cnn.py"
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000
TARGET_RATIO = 1.5  # dltool samples/s / plain samples/s
TARGET_SHARE = 0.50  # achieved GFLOP/s / measured matmul peak


# ---------------------------------------------------------------------------- FLOPs


def forward_macs(input_shape: list[int], layers: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Multiply-adds per example of each conv2d / dense layer, from the layer shapes.

    Follows dltool's layer specs for the layers the MNIST convnet uses (conv2d with
    ``padding: valid`` and stride 1 unless given, max_pooling2d, flatten, dense;
    rescaling and dropout keep the shape and do no multiply-adds worth counting).
    A conv2d's multiply-adds are out_h * out_w * filters * k_h * k_w * in_channels;
    a dense layer's inputs * units. Biases, activations, pooling and the loss are left
    out (each under 1% of the multiply-adds here).
    """
    shape = list(input_shape)
    counted: list[tuple[str, int]] = []
    for index, layer in enumerate(layers):
        kind = layer["type"]
        if kind == "conv2d":
            kernel = _pair(layer["kernel_size"])
            strides = _pair(layer.get("strides", 1))
            height, width, channels = shape
            if layer.get("padding", "valid") == "same":
                out = [-(-height // strides[0]), -(-width // strides[1])]
            else:
                out = [(height - kernel[0]) // strides[0] + 1, (width - kernel[1]) // strides[1] + 1]  # fmt: skip
            filters = layer["filters"]
            counted.append((f"{index}:conv2d", out[0] * out[1] * filters * kernel[0] * kernel[1] * channels))  # fmt: skip
            shape = [out[0], out[1], filters]
        elif kind == "max_pooling2d":
            pool = _pair(layer["pool_size"])
            strides = _pair(layer.get("strides") or layer["pool_size"])
            shape = [(shape[0] - pool[0]) // strides[0] + 1, (shape[1] - pool[1]) // strides[1] + 1, shape[2]]  # fmt: skip
        elif kind == "flatten":
            shape = [int(_product(shape))]
        elif kind == "dense":
            counted.append((f"{index}:dense", shape[-1] * layer["units"]))
            shape = [*shape[:-1], layer["units"]]
        elif kind not in ("rescaling", "dropout"):
            raise ValueError(f"layer {index}: {kind!r} is not counted by this benchmark")
    return counted


def training_flops(input_shape: list[int], layers: list[dict[str, Any]]) -> dict[str, int]:
    """FLOPs per example (1 multiply-add = 2 FLOPs): forward, and one training step's worth.

    Training = forward + backward. The backward pass of each conv2d / dense layer does one
    product as big as its forward one for the weight gradient and one for the input
    gradient, except the first counted layer, whose input gradient nobody needs
    (TensorFlow does not compute it: the input is not a variable). So training is 3x
    forward less the first layer's input gradient (``rule_of_3x`` gives the plain 3x).
    """
    macs = [m for _, m in forward_macs(input_shape, layers)]
    forward = 2 * sum(macs)
    training = 3 * forward - 2 * macs[0]
    return {"forward": forward, "training": training, "rule_of_3x": 3 * forward}


def _pair(value: int | list[int]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def _product(values: list[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result


# ---------------------------------------------------------------------------- data


def write_fake_mnist(keras_home: Path, seed: int = 0) -> Path:
    """A synthetic MNIST-shaped ``mnist.npz`` in Keras' cache layout (random uint8 28x28 images,
    60,000 train and 10,000 test). A label is the brightest of 10 horizontal bands of its
    image: learnable, and all 10 classes present."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cache = keras_home / "datasets"
    cache.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, size=(TRAIN_IMAGES + TEST_IMAGES, 28, 28), dtype=np.uint8)
    labels = band_labels(images)
    path = cache / "mnist.npz"
    np.savez(
        path,
        x_train=images[:TRAIN_IMAGES],
        y_train=labels[:TRAIN_IMAGES],
        x_test=images[TRAIN_IMAGES:],
        y_test=labels[TRAIN_IMAGES:],
    )
    return path


def band_labels(images: Any) -> Any:
    """uint8 labels 0-9: which of 10 horizontal bands of rows (28 rows split 3/3/.../2) is brightest."""
    import numpy as np

    bands = np.array_split(np.arange(images.shape[1]), 10)
    sums = np.stack([images[:, rows, :].sum(axis=(1, 2), dtype=np.int64) / len(rows) for rows in bands], axis=1)  # fmt: skip
    return sums.argmax(axis=1).astype(np.uint8)


# ---------------------------------------------------------------------------- workers
# Each runs in its own process: python cnn_speed.py --worker NAME; prints one JSON line.


def worker_peak() -> dict[str, Any]:
    """Best float32 matmul GFLOP/s in TensorFlow, for n = 1024 and 2048.

    Each call multiplies a chain ``c = c @ b`` ``repeat`` times: every product depends on
    the one before, so grappler cannot fold identical products into one (an unrolled loop
    of ``a @ b`` was computed once and "measured" 900 GFLOP/s on 2 cores). ``b`` is scaled
    by 1/sqrt(n) so the values stay near 1 (no overflow, no denormals).
    """
    import tensorflow as tf

    found: dict[str, float] = {}
    for n, repeat in ((1024, 20), (2048, 5)):
        start = tf.random.normal((n, n), dtype=tf.float32)
        b = tf.random.normal((n, n), dtype=tf.float32) / n**0.5

        @tf.function
        def chain(c: Any, b: Any, repeat: int = repeat) -> Any:
            for _ in range(repeat):
                c = tf.linalg.matmul(c, b)
            return c[0, 0]

        chain(start, b).numpy()  # trace and warm up
        best = min(_seconds(lambda c=start, b=b, f=chain: f(c, b).numpy()) for _ in range(5))
        found[str(n)] = 2 * n**3 * repeat / best / 1e9
    return {"gflops_by_n": found, "gflops": max(found.values())}


def worker_ceiling() -> dict[str, Any]:
    """Samples/s of the model's forward + backward alone: one fixed batch of 128, no optimizer,
    metrics or pipeline. And the same with Adam's update, as ``fit``'s step has it."""
    import numpy as np

    from dltool.backend import import_keras

    keras = import_keras()
    import tensorflow as tf

    from dltool.config import load_config
    from dltool.model import build_model

    config = load_config(CONFIG)
    batch = config.training.batch_size
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 256, size=(batch, 28, 28, 1)).astype("float32"))
    model = build_model(config, x.numpy(), str(CONFIG))
    y = tf.constant(rng.integers(0, 10, size=batch))
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)

    @tf.function
    def gradients(steps: int) -> Any:
        total = tf.zeros(())
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            total += loss + tf.add_n([tf.reduce_sum(g[..., :1]) for g in grads]) * 0.0
        return total

    @tf.function
    def steps_with_adam(steps: int) -> Any:
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)  # fmt: skip
        return loss

    result: dict[str, Any] = {"batch": batch}
    for name, function in (("grads", gradients), ("adam", steps_with_adam)):
        steps = tf.constant(50)
        function(tf.constant(2)).numpy()
        best = min(_seconds(lambda f=function, s=steps: f(s).numpy()) for _ in range(3))
        result[name] = 50 * batch / best
    return result


def worker_pipeline() -> dict[str, Any]:
    """Samples/s of dltool's training input pipeline alone (TrainPipeline over the MNIST
    training arrays, one epoch of batches, no model)."""
    import numpy as np

    from dltool.backend import import_keras

    import_keras()
    from dltool.pipelines import TrainPipeline

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(54_000, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=54_000)
    pipeline = TrainPipeline(x, y, 128, seed=1, first_epoch=0)
    for _ in pipeline.dataset:  # warm up
        pass
    best = min(_seconds(lambda: [None for _ in pipeline.dataset]) for _ in range(3))
    return {"dltool": len(x) / best}


def worker_layout() -> dict[str, Any]:
    """The data-layout lever: forward + backward + Adam samples/s of the convnet built in plain
    Keras with ``data_format`` channels_last (NHWC, what dltool builds) and channels_first
    (NCHW), one fixed batch of 128 under ``tf.function``; an error is reported as such."""
    import numpy as np

    from dltool.backend import import_keras

    keras = import_keras()
    import tensorflow as tf

    result: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    y = tf.constant(rng.integers(0, 10, size=128))
    for data_format in ("channels_last", "channels_first"):
        shape = (28, 28, 1) if data_format == "channels_last" else (1, 28, 28)
        x = tf.constant(rng.random((128, *shape), dtype=np.float32))
        model = keras.Sequential([
            keras.Input(shape),
            keras.layers.Conv2D(32, 3, activation="relu", data_format=data_format),
            keras.layers.MaxPooling2D(2, data_format=data_format),
            keras.layers.Conv2D(64, 3, activation="relu", data_format=data_format),
            keras.layers.MaxPooling2D(2, data_format=data_format),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])  # fmt: skip
        loss_fn = keras.losses.SparseCategoricalCrossentropy()
        optimizer = keras.optimizers.Adam()
        optimizer.build(model.trainable_variables)

        @tf.function
        def steps(
            count: Any,
            model: Any = model,
            x: Any = x,
            optimizer: Any = optimizer,
            loss_fn: Any = loss_fn,
        ) -> Any:
            for _ in tf.range(count):
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)  # fmt: skip
            return loss

        try:
            steps(tf.constant(2)).numpy()
            best = min(_seconds(lambda f=steps: f(tf.constant(30)).numpy()) for _ in range(3))
            result[data_format] = 30 * 128 / best
        except Exception as error:  # NCHW convolutions may have no CPU kernel
            result[data_format] = " ".join(str(error).split())[:160]
    return result


WORKERS = {
    "peak": worker_peak,
    "ceiling": worker_ceiling,
    "pipeline": worker_pipeline,
    "layout": worker_layout,
}

# Variants of the dltool side that --levers runs round-robin: (label, --set, environment).
LEVERS: list[tuple[str, list[str], list[str]]] = [
    ("as shipped (steps_per_execution auto = 32)", [], []),
    ("steps_per_execution=1", ["training.steps_per_execution=1"], []),
    ("TF_ENABLE_ONEDNN_OPTS=0", [], ["TF_ENABLE_ONEDNN_OPTS=0"]),
    (
        "intra-op 2, inter-op 1 threads",
        [],
        ["TF_NUM_INTRAOP_THREADS=2", "TF_NUM_INTEROP_THREADS=1"],
    ),
]


def _seconds(function: Any) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run_worker(name: str, env: dict[str, str]) -> dict[str, Any]:
    measured = run_timed([sys.executable, str(Path(__file__).resolve()), "--worker", name], REPO, env)  # fmt: skip
    return json.loads(measured.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- training runs


@dataclass
class Side:
    """Measured runs of one side: each run's steady-epoch samples/s."""

    rates: list[float] = field(default_factory=list)
    epoch_seconds: list[list[float]] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    train_examples: int = 0

    def add(self, epoch_seconds: list[float], train_examples: int, load: float) -> None:
        self.epoch_seconds.append(epoch_seconds)
        self.rates.append(steady_samples_per_second(epoch_seconds, train_examples))
        self.loads.append(load)
        self.train_examples = train_examples

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def steady_samples_per_second(epoch_seconds: list[float], train_examples: int) -> float:
    """Training examples per second over the epochs after the first (which traces)."""
    steady = epoch_seconds[1:]
    if not steady:
        raise ValueError("need at least 2 epochs: the first one traces and is left out")
    return train_examples * len(steady) / sum(steady)


def load_average() -> float:
    """The 1-minute load average (NaN where unknown)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def run_dltool(scratch: Path, index: int, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[float], int]:  # fmt: skip
    runs_dir = scratch / "runs" / str(index)
    command = [str(BIN / "dltool"), "train", str(CONFIG), "--runs-dir", str(runs_dir)]
    for assignment in [f"training.epochs={args.epochs}", *args.set]:
        command += ["--set", assignment]
    run_timed(command, scratch, env)
    (folder,) = runs_dir.iterdir()
    info = json.loads((folder / "run.json").read_text())
    lines = (folder / "history.csv").read_text().splitlines()
    column = lines[0].split(",").index("duration_s")
    seconds = [float(line.split(",")[column]) for line in lines[1:]]
    return seconds, int(info["examples"]["train"])


def run_plain(scratch: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[list[float], int]:  # fmt: skip
    measured = run_timed([sys.executable, str(PLAIN), str(args.epochs)], scratch, env)
    report = json.loads(measured.stdout.strip().splitlines()[-1])
    return report["epoch_seconds"], int(report["train_examples"])


# ---------------------------------------------------------------------------- report


def verdict(value: float, target: float, what: str) -> str:
    """``PASS``/``MISS`` and by how much, relative to the target."""
    if value >= target:
        return f"PASS: {what} (target {target:g}; {value / target - 1:+.0%} over)"
    return f"MISS: {what} (target {target:g}; {1 - value / target:.0%} short, needs {target / value:.2f}x)"  # fmt: skip


def report(
    args: argparse.Namespace,
    flops: dict[str, int],
    peak: dict[str, Any],
    ceiling: dict[str, Any],
    pipeline: dict[str, Any],
    sides: dict[str, Side],
    seconds: float,
) -> str:
    gflops = peak["gflops"]
    validation = 6_000  # 10% of 60,000, a forward pass each steady epoch

    def achieved(side: Side) -> float:
        """GFLOP/s: training FLOPs of the train split + forward FLOPs of the validation pass."""
        per_epoch = side.train_examples * flops["training"] + validation * flops["forward"]
        return side.rate / side.train_examples * per_epoch / 1e9

    lines = [
        "# The MNIST convnet's training speed (issue 17, target 3)",
        "",
        f"`{' '.join(['python benchmarks/cnn_speed.py', *sys.argv[1:]])}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{seconds / 60:.1f} minutes. {os.cpu_count()} cores ({cpu_model()}), Keras {version('keras')}, "
        f"TensorFlow {version('tensorflow')}, no GPU. Data: a synthetic MNIST-shaped mnist.npz "
        f"(60,000 + 10,000 random uint8 28x28 images) in a temporary KERAS_HOME; 10% of the "
        f"training images validate (dltool: seeded, stratified; plain: Keras' `validation_split=0.1`, "
        f"the last 10%), so both train on 54,000.",
        "",
        f"dltool side: `dltool train configs/mnist_cnn.yaml --set training.epochs={args.epochs}`"
        + "".join(f" `--set {s}`" for s in args.set)
        + "".join(f" with `{e}`" for e in args.env)
        + "; plain side: benchmarks/plain/mnist_cnn.py (keras.io's mnist_convnet). "
        f"{args.runs} runs each, alternately, whole processes. Samples/s = training examples "
        f"x steady epochs / their seconds (epoch 1 traces and is left out; an epoch's seconds "
        f"include its validation pass, on both sides).",
        "",
        "## FLOPs per example",
        "",
        "Counted from the layer shapes (benchmarks/cnn_speed.py `training_flops`): multiply-adds "
        "of each conv2d (out_h x out_w x filters x 3 x 3 x in_channels) and dense layer, 2 FLOPs "
        "each; training = forward + weight gradients + input gradients (the first conv's input "
        "gradient is not computed) = 3x forward less the first conv's share. Biases, "
        "activations, pooling, the loss and Adam's update are not counted (under 1%).",
        "",
        f"- forward: {flops['forward']:,} FLOPs; training: {flops['training']:,} FLOPs "
        f"(the plain 3x rule gives {flops['rule_of_3x']:,}, {flops['rule_of_3x'] / flops['training'] - 1:.1%} more)",
        f"- achieved GFLOP/s = samples/s x training FLOPs, plus the validation pass "
        f"({validation:,} forward passes a steady epoch)",
        "",
        "## Results",
        "",
        f"Float32 matmul peak in TensorFlow (best of 5, its own process, measured before and "
        f"after the training runs; the higher counts): **{gflops:.1f} GFLOP/s** (before: "
        f"{peak['before'][0]:.1f} at load {peak['before'][1]:.2f}; after: {peak['after'][0]:.1f} "
        f"at load {peak['after'][1]:.2f}; before, by n: "
        + ", ".join(f"n={n}: {g:.1f}" for n, g in peak["gflops_by_n"].items())
        + ").",
        "",
        "| side | samples/s, median (min-max) | GFLOP/s | share of peak | load (1 min) at start |",
        "|---|---|---|---|---|",
    ]
    for name, side in sides.items():
        share = achieved(side) / gflops
        lines.append(
            f"| {name} | {side.rate:,.0f} ({min(side.rates):,.0f}-{max(side.rates):,.0f}) | "
            f"{achieved(side):.1f} | {share:.0%} | "
            + ", ".join(f"{load:.2f}" for load in side.loads)
            + " |"
        )
    ceiling_share = {k: ceiling[k] * flops["training"] / 1e9 / gflops for k in ("grads", "adam")}
    lines += [
        "",
        "Ceilings, each its own process (no Keras `fit`, no callbacks, no input pipeline; one "
        f"fixed batch of {ceiling['batch']} under `tf.function`, a `tf.range` loop of 50 steps, best of 3):",
        "",
        "| what | samples/s | share of peak |",
        "|---|---|---|",
        f"| forward + backward only | {ceiling['grads']:,.0f} | {ceiling_share['grads']:.0%} |",
        f"| forward + backward + Adam update | {ceiling['adam']:,.0f} | {ceiling_share['adam']:.0%} |",
        f"| dltool's training input pipeline alone (no model) | {pipeline['dltool']:,.0f} | - |",
        "",
        "Epoch seconds of each run:",
        "",
    ]
    for name, side in sides.items():
        for index, seconds_list in enumerate(side.epoch_seconds):
            lines.append(f"- {name} run {index + 1}: " + ", ".join(f"{s:.2f}" for s in seconds_list))  # fmt: skip
    lines += ["", "## Targets", ""]
    dltool = sides["dltool"]
    if "plain" in sides:
        ratio = dltool.rate / sides["plain"].rate
        lines.append(f"- speed: {verdict(ratio, TARGET_RATIO, f'dltool {ratio:.2f}x plain Keras samples/s')}")  # fmt: skip
    share = achieved(dltool) / gflops
    lines.append(f"- peak share: {verdict(share, TARGET_SHARE, f'dltool {share:.0%} of the matmul peak')}")  # fmt: skip
    lines += ["", "Measured limits (the ceilings above, same run):", ""]
    lines.append(
        f"- TensorFlow's own kernels on this model reach {ceiling_share['grads']:.0%} of the matmul "
        f"peak (forward + backward, nothing else) and {ceiling_share['adam']:.0%} with Adam's "
        f"update; dltool runs at {dltool.rate / ceiling['adam']:.0%} of the latter's samples/s "
        "(its epochs also hold the validation pass, about 4% of the work). A dltool with no "
        f"overhead at all would reach {ceiling_share['adam']:.0%} of the peak"
        + (
            ": the 50% target is out of reach of anything dltool does around the kernels."
            if ceiling_share["adam"] < TARGET_SHARE
            else "."
        )
    )
    if "plain" in sides:
        plain = sides["plain"]
        lines.append(
            f"- plain Keras runs at {plain.rate / ceiling['adam']:.0%} of that ceiling; a dltool "
            f"at the ceiling would be {ceiling['adam'] / plain.rate:.2f}x plain, so 1.5x needs "
            f"plain below {ceiling['adam'] / TARGET_RATIO:,.0f} samples/s on this machine."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epoch 1 traces; the rest are timed")
    parser.add_argument("--output", type=Path, default=HERE / "results-cnn.md")
    parser.add_argument("--set", action="append", default=[], help="dltool side: KEY=VALUE")
    parser.add_argument("--env", action="append", default=[], help="dltool side: NAME=VALUE")
    parser.add_argument("--no-plain", action="store_true", help="time the dltool side only")
    parser.add_argument(
        "--levers",
        action="store_true",
        help="time dltool variants (LEVERS) round-robin; replace the Levers section of --output",
    )
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker]()))
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: epoch 1 traces and is left out")
    if args.levers:
        levers(args)
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dltool-cnn-speed-") as temporary:
        scratch = Path(temporary)
        env = user_environment() | {"KERAS_HOME": str(scratch / "keras")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE / "plain"), env.get("PYTHONPATH")]))  # fmt: skip
        write_fake_mnist(scratch / "keras")
        dltool_env = env | dict(assignment.split("=", 1) for assignment in args.env)
        print(f"load {load_average():.2f}: matmul peak ...", file=sys.stderr)
        peak = run_worker("peak", env)
        peak["before"] = (peak["gflops"], load_average())
        ceiling = run_worker("ceiling", dltool_env)
        pipeline = run_worker("pipeline", dltool_env)
        print(f"peak {peak['gflops']:.1f} GFLOP/s, ceiling {ceiling}, pipeline {pipeline}", file=sys.stderr)  # fmt: skip
        sides = {"dltool": Side(), **({} if args.no_plain else {"plain": Side()})}
        for index in range(args.runs):
            load = load_average()
            sides["dltool"].add(*run_dltool(scratch, index, args, dltool_env), load)
            print(f"dltool run {index + 1} (load {load:.2f}): {sides['dltool'].rates[-1]:,.0f}/s", file=sys.stderr)  # fmt: skip
            if "plain" in sides:
                load = load_average()
                sides["plain"].add(*run_plain(scratch, args, env), load)
                print(f"plain run {index + 1} (load {load:.2f}): {sides['plain'].rates[-1]:,.0f}/s", file=sys.stderr)  # fmt: skip
        after = run_worker("peak", env)  # again: on a shared machine the load drifts
        peak["after"] = (after["gflops"], load_average())
        peak["gflops"] = max(peak["gflops"], after["gflops"])
    config = _config_layers()
    flops = training_flops(config["model"]["input_shape"], config["model"]["layers"])
    text = report(args, flops, peak, ceiling, pipeline, sides, time.perf_counter() - started)
    previous = args.output.read_text() if args.output.exists() else ""
    _, found, kept = previous.partition("\n## Levers\n")  # --levers' section, kept until rerun
    args.output.write_text(text.rstrip("\n") + "\n" + (found + kept if found else ""))
    print(text)


def levers(args: argparse.Namespace) -> None:
    """Run each of LEVERS ``--runs`` times, round-robin (A B C A B C), plus the layout worker;
    write their table as the Levers section of ``--output`` (kept from an earlier run)."""
    started = time.perf_counter()
    sides = {label: Side() for label, _, _ in LEVERS}
    with tempfile.TemporaryDirectory(prefix="dltool-cnn-levers-") as temporary:
        scratch = Path(temporary)
        env = user_environment() | {"KERAS_HOME": str(scratch / "keras")}
        write_fake_mnist(scratch / "keras")
        load = load_average()
        layout = run_worker("layout", env)
        layout_load = (load, load_average())
        print(f"layout {layout}", file=sys.stderr)
        index = 0
        for _ in range(args.runs):
            for label, sets, environment in LEVERS:
                variant = argparse.Namespace(**{**vars(args), "set": [*args.set, *sets]})
                load = load_average()
                lever_env = env | dict(e.split("=", 1) for e in [*args.env, *environment])
                sides[label].add(*run_dltool(scratch, index, variant, lever_env), load)
                index += 1
                print(f"{label} (load {load:.2f}): {sides[label].rates[-1]:,.0f}/s", file=sys.stderr)  # fmt: skip
    base = sides[LEVERS[0][0]].rate
    lines = [
        "## Levers",
        "",
        f"`{' '.join(['python benchmarks/cnn_speed.py', *sys.argv[1:]])}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {(time.perf_counter() - started) / 60:.1f} minutes: "
        f"dltool only, {args.epochs} epochs, the variants round-robin, {args.runs} runs each; "
        "samples/s of the steady epochs as above.",
        "",
        "| dltool variant | samples/s, median (min-max) | vs as shipped | load (1 min) at start |",
        "|---|---|---|---|",
    ]
    for label, side in sides.items():
        lines.append(
            f"| {label} | {side.rate:,.0f} ({min(side.rates):,.0f}-{max(side.rates):,.0f}) | "
            f"{side.rate / base:.2f}x | " + ", ".join(f"{x:.2f}" for x in side.loads) + " |"
        )
    shown = {k: f"{v:,.0f} samples/s" if isinstance(v, float) else f"error: {v}" for k, v in layout.items()}  # fmt: skip
    lines += [
        "",
        "Data layout (plain Keras model, fixed batch, forward + backward + Adam under "
        f"`tf.function`, load {layout_load[0]:.2f} before, {layout_load[1]:.2f} after): "
        + "; ".join(f"{k}: {v}" for k, v in shown.items())
        + ".",
    ]
    previous = args.output.read_text() if args.output.exists() else ""
    kept = previous.split("\n## Levers\n")[0].rstrip("\n")
    args.output.write_text((kept + "\n\n" if kept else "") + "\n".join(lines) + "\n")
    print("\n".join(lines))


def _config_layers() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(CONFIG.read_text())


if __name__ == "__main__":
    main()
