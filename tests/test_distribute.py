"""training.distribute: one model on several devices.

Two logical CPU devices stand in for two accelerators. TensorFlow takes that setting only
before anything uses its devices, so those runs happen in a child process that sets it
first (one process for all of them: TensorFlow starts once).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import tiny_config
from dltool.config import validate_config
from dltool.errors import ConfigError
from dltool.rundir import INTERNALS, RUN_FILES

# One device, the strategy (argv[3]), and the strategy interrupted after epoch 2 then resumed: the final
# metrics of each, the devices run.json recorded, and the resumed run's history.
TWO_TF_DEVICES = """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
TWO_JAX_DEVICES = """
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # before JAX starts
"""
CHILD = textwrap.dedent(
    """
    import json, signal, sys

    import dltool
    from dltool import interrupts

    config, runs, strategy = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    distributed = [f"training.distribute={strategy}"]

    def stop_after_2(epoch, logs):  # a Ctrl-C as the handler records it, after epoch 2
        if epoch == 2:
            interrupts.REQUEST.signum = signal.SIGINT
        return False

    out = {}
    for key, overrides in (("one", []), ("distributed", distributed)):
        run = dltool.train(config, overrides=overrides, runs_dir=f"{runs}/{key}", quiet=True)
        out[key] = {"metrics": run.metrics, "run": str(run.path)}
    try:
        dltool.train(config, overrides=distributed, runs_dir=f"{runs}/cut", quiet=True, prune=stop_after_2)
    except KeyboardInterrupt:
        pass
    interrupts.REQUEST.signum = None
    (folder,) = __import__("pathlib").Path(f"{runs}/cut").iterdir()
    out["interrupted"] = json.loads((folder / "run.json").read_text())["status"]
    from dltool.training import resume_training  # after Keras started on the config's backend

    run = resume_training(folder, console=__import__("dltool.views").views.console(quiet=True))
    out["resumed"] = {"metrics": run.metrics, "run": str(run.path)}
    print(json.dumps(out))
    """
)

# Relative to the values: float32 sums in another order (see the test's docstring).
MIRRORED_TOLERANCE = 1e-5


def _info(run: str) -> dict[str, Any]:
    return json.loads((Path(run) / "run.json").read_text())


def _close(ours: dict[str, Any], theirs: dict[str, Any], relative: float) -> None:
    for split in ("train", "validation", "test"):
        for name, value in theirs[split].items():
            assert ours[split][name] == pytest.approx(value, rel=relative, abs=relative), (split, name)  # fmt: skip


def _train_in_child(tmp_path: Path, devices: str, strategy: str, **training: Any) -> dict[str, Any]:
    """One device, ``strategy``, and ``strategy`` cut after epoch 2 and resumed, in a child
    process whose CPU is two devices (``devices``: the code that makes them)."""
    config = tiny_config(
        data={"n_train": 200, "validation_split": 0.25},
        training={"epochs": 3, "checkpoint_seconds": 0, **training},
    )
    child = subprocess.run(
        [sys.executable, "-c", devices + CHILD, json.dumps(config), str(tmp_path), strategy],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def _resumed_exactly(out: dict[str, Any], devices: list[str]) -> None:
    assert out["interrupted"] == "interrupted"
    resumed = out["resumed"]
    info = _info(resumed["run"])
    assert (info["status"], info["resumed"][0]["from_epoch"]) == ("completed", 2)
    assert info["devices"] == devices
    history = (Path(resumed["run"]) / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]
    _close(resumed["metrics"], out["distributed"]["metrics"], 1e-6)  # continues exactly
    for name in RUN_FILES:  # every artifact of a completed run
        assert (Path(resumed["run"]) / name).is_file(), name


@pytest.mark.slow
def test_mirrored_on_two_devices_matches_one_device_and_resumes_exactly(tmp_path: Path) -> None:
    """Mirrored on 2 devices: the same final metrics as 1 device, within MIRRORED_TOLERANCE.

    Each replica computes the mean loss of its half of the global batch, scaled by 1/2,
    and the gradients are summed across replicas: mathematically the gradient of the
    whole batch, as on one device (the batch size stays global: 32 = 2 x 16). Only the
    float32 summation order differs, about 1e-7 per step. Every batch here splits evenly
    (150 training rows: 4 x 32 + 22); a batch of odd size would weigh its two uneven halves
    equally, a small real difference. Interrupted after epoch 2 and resumed under the
    strategy, the run ends where the uninterrupted one does (the checkpoint holds the
    weights and optimizer state, and each epoch's order is seeded).
    """
    out = _train_in_child(tmp_path, TWO_TF_DEVICES, "mirrored", record_internals=True)
    one, mirrored = out["one"], out["distributed"]
    assert _info(one["run"])["devices"] == ["/device:CPU:0"]
    assert _info(mirrored["run"])["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert _info(mirrored["run"])["distribute"] == "mirrored"
    _close(mirrored["metrics"], one["metrics"], MIRRORED_TOLERANCE)
    # record_internals' gradient norms are the whole batch's on both (each replica holds half),
    # and a unit alive on either replica is alive
    internals = [json.loads((Path(side["run"]) / INTERNALS).read_text()) for side in (one, mirrored)]  # fmt: skip
    norms = [recorded["gradient_norms"] for recorded in internals]
    assert norms[0]
    assert norms[1].keys() == norms[0].keys()
    for name, values in norms[0].items():
        assert norms[1][name] == pytest.approx(values, rel=1e-4), name
    assert internals[0]["dead_relu"]
    assert internals[1]["dead_relu"] == internals[0]["dead_relu"]
    _resumed_exactly(out, ["/device:CPU:0", "/device:CPU:1"])


@pytest.mark.slow
def test_data_parallel_on_jax_matches_one_device_and_resumes_exactly(tmp_path: Path) -> None:
    """keras.distribution.DataParallel over two JAX CPU devices: the same reasoning and
    tolerance as mirrored. Skipped without JAX (the jax extra; CI does not install it)."""
    pytest.importorskip("jax")
    out = _train_in_child(tmp_path, TWO_JAX_DEVICES, "data_parallel", backend="jax")
    one, parallel = out["one"], out["distributed"]
    assert _info(one["run"])["devices"] == ["cpu:0"]
    assert _info(parallel["run"])["devices"] == ["cpu:0", "cpu:1"]
    _close(parallel["metrics"], one["metrics"], MIRRORED_TOLERANCE)
    _resumed_exactly(out, ["cpu:0", "cpu:1"])


@pytest.mark.parametrize(
    ("training", "message"),
    [
        (
            {"distribute": "multi_worker_mirrored"},
            "training.distribute: multi_worker_mirrored is refused: Keras 3's fit fails under "
            "tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585)",
        ),
        (
            {"distribute": "mirrored", "backend": "jax"},
            "training.distribute: mirrored runs on training.backend tensorflow (received backend 'jax'",
        ),
        (
            {"distribute": "data_parallel"},
            "training.distribute: data_parallel runs on training.backend jax (received backend 'tensorflow'",
        ),
        (
            {"distribute": "mirrored", "jit_compile": True},
            "training.jit_compile: XLA compilation clashes with tf.distribute",
        ),
        ({"distribute": "tpu"}, "training.distribute"),
    ],
    ids=["multi-worker", "mirrored-on-jax", "data-parallel-on-tf", "jit", "unknown"],
)
def test_distribute_refusals(training: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(tiny_config(training=training), source="exp.yaml")
    assert any(message in line for line in caught.value.lines), caught.value.lines
