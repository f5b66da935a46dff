"""Distributed training with real processes on loopback: the tutorial's TFJob topology (1 master, 2 workers,
1 PS), chief + 2 workers without PS, a single process, and workers killed mid-run."""

import json
import re
import shutil
from pathlib import Path

import pytest

from trainer.loopback_job import LoopbackJob
from trainer_fixtures import make_cluster, mnist_dir  # noqa: F401 (pytest fixtures)
from trainer_helpers import (ACCURACY_FLOOR, DENSE_ACCURACY_FLOOR, JOB_TIMEOUT_S, TRAIN_STEPS, run_trainer,
                             trainer_args, wait_for_checkpoint_restarting_signal_deaths)

PS_TOPOLOGY = {"master": 1, "worker": 2, "ps": 1}
MWMS_TOPOLOGY = {"chief": 1, "worker": 2}


def logs(cluster: LoopbackJob) -> str:
    return "\n".join(f"----- {job}:{index} -----\n{cluster.tail(job, index)}" for job, index in cluster.tasks)


def final_accuracy(log: str) -> tuple[int, float]:
    """The last ``Accuracy at step N: A`` line the chief printed."""
    matches = re.findall(r"^Accuracy at step (\d+): (\d\.\d{4})$", log, re.MULTILINE)
    assert matches, f"no accuracy line in:\n{log[-3000:]}"
    return int(matches[-1][0]), float(matches[-1][1])


def accuracy_steps(log: str) -> list[int]:
    return [int(step) for step in re.findall(r"^Accuracy at step (\d+): ", log, re.MULTILINE)]


def optimizer_steps(model_dir: Path) -> int:
    """The optimizer's own count of applied updates in the latest checkpoint (not our step counter)."""
    import tensorflow as tf

    checkpoints = str(model_dir / "checkpoints")
    names = [name for name, _ in tf.train.list_variables(checkpoints)
             if name.startswith("optimizer/") and name.endswith("iterations/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(names) == 1, names
    return int(tf.train.load_variable(checkpoints, names[0]))


def has_convolutions(model) -> bool:
    import keras

    return any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)


def run_job(jobs: dict[str, int], data_dir: Path, workdir: Path):
    cluster = LoopbackJob(jobs, trainer_args(data_dir, workdir / "model"), workdir)
    cluster.start_all()
    try:
        exit_codes = cluster.wait_all(JOB_TIMEOUT_S)
    except Exception:
        cluster.stop()
        raise
    return cluster, exit_codes


@pytest.fixture(scope="module")
def ps_job(tmp_path_factory, mnist_dir):
    """The tutorial's topology, run to completion once; several tests check what it did."""
    cluster, exit_codes = run_job(PS_TOPOLOGY, mnist_dir, tmp_path_factory.mktemp("ps-job"))
    yield cluster, exit_codes
    cluster.stop()


@pytest.fixture(scope="module")
def mwms_job(tmp_path_factory, mnist_dir):
    """Chief + 2 workers without PS (MultiWorkerMirroredStrategy), run to completion once."""
    cluster, exit_codes = run_job(MWMS_TOPOLOGY, mnist_dir, tmp_path_factory.mktemp("mwms-job"))
    yield cluster, exit_codes
    cluster.stop()


@pytest.fixture(params=["ps_job", "mwms_job"])
def finished_job(request):
    return request.getfixturevalue(request.param)


def chief_of(cluster: LoopbackJob) -> tuple[str, int]:
    return ("master", 0) if "master" in cluster.spec else ("chief", 0)


def model_dir_of(cluster: LoopbackJob) -> Path:
    return cluster.workdir / "model"


def test_tutorial_topology_with_master_trains_past_the_floor(ps_job):
    cluster, exit_codes = ps_job
    assert exit_codes == {task: 0 for task in cluster.tasks}, logs(cluster)
    chief_log = cluster.log("master", 0)
    assert "Task chief:0: ParameterServerStrategy" in chief_log, "the master must run as TF2's chief"
    step, accuracy = final_accuracy(chief_log)
    assert step == TRAIN_STEPS
    assert accuracy >= ACCURACY_FLOOR, f"held-out accuracy {accuracy} < {ACCURACY_FLOOR}"


def test_tutorial_topology_workers_and_ps_exit_once_the_chief_is_done(ps_job):
    cluster, exit_codes = ps_job
    for job, index in [("worker", 0), ("worker", 1), ("ps", 0)]:
        log = cluster.log(job, index)
        assert f"{job}:{index}: serving at" in log, log
        assert f"{job}:{index}: the chief finished at step {TRAIN_STEPS}; shutting down" in log, log
        assert exit_codes[(job, index)] == 0


def test_chief_and_two_workers_without_ps_train_past_the_floor(mwms_job):
    cluster, exit_codes = mwms_job
    assert exit_codes == {task: 0 for task in cluster.tasks}, logs(cluster)
    for job, index in cluster.tasks:
        assert f"Task {job}:{index}: MultiWorkerMirroredStrategy" in cluster.log(job, index)
    step, accuracy = final_accuracy(cluster.log("chief", 0))
    assert step == TRAIN_STEPS
    assert accuracy >= ACCURACY_FLOOR, f"held-out accuracy {accuracy} < {ACCURACY_FLOOR}"


def test_only_the_chief_writes_checkpoints_summaries_and_the_model(finished_job):
    cluster, _ = finished_job
    chief = chief_of(cluster)
    model_dir = model_dir_of(cluster)
    assert sorted(p.name for p in model_dir.iterdir()) == ["COMPLETE.json", "checkpoints", "logs", "mnist.keras"]
    # The last three saves (of steps 50..200), each an index and data shards (one per PS under PS).
    checkpoints = {re.sub(r"data-\d+-of-\d+$", "data", p.name) for p in (model_dir / "checkpoints").iterdir()}
    assert checkpoints == {"checkpoint"} | {f"ckpt-{s}.{ext}" for s in (100, 150, 200) for ext in ("index", "data")}
    # One event file, and its name carries the pid of the process that wrote it: the chief's.
    events = list((model_dir / "logs").iterdir())
    assert len(events) == 1, events
    assert f".{cluster.process(*chief).pid}." in events[0].name
    for task in cluster.tasks:
        if task != chief:
            log = cluster.log(*task)
            assert "Accuracy at step" not in log and "Saved checkpoint" not in log, f"{task} wrote outputs"
            # MultiWorkerMirroredStrategy workers save checkpoint copies into their TMPDIR and delete them.
            leftovers = [p for p in cluster.tmp_dir(*task).rglob("*") if "ckpt" in p.name]
            assert leftovers == [], f"{task} left checkpoint copies behind: {leftovers}"


def test_summaries_hold_loss_and_held_out_accuracy_at_every_evaluation(finished_job):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cluster, _ = finished_job
    events = EventAccumulator(str(model_dir_of(cluster) / "logs"), size_guidance={"tensors": 0})
    events.Reload()
    assert set(events.Tags()["tensors"]) == {"loss", "accuracy"}
    for tag in ("loss", "accuracy"):
        assert [e.step for e in events.Tensors(tag)] == [50, 100, 150, 200], tag


def test_exported_model_classifies_held_out_digits_as_the_chief_reported(finished_job, mnist_dir):
    import keras
    import numpy as np

    cluster, _ = finished_job
    model = keras.models.load_model(model_dir_of(cluster) / "mnist.keras")
    with np.load(mnist_dir / "mnist.npz") as data:
        predicted = model.predict(data["x_test"].astype("float32"), verbose=0).argmax(axis=1)
        accuracy = float((predicted == data["y_test"]).mean())
    _, reported = final_accuracy(cluster.log(*chief_of(cluster)))
    assert accuracy == pytest.approx(reported, abs=0.002)
    assert has_convolutions(model), "the default model is the CNN"
    assert json.loads((model_dir_of(cluster) / "COMPLETE.json").read_text())["step"] == TRAIN_STEPS


def test_single_process_without_tf_config_trains_past_the_floor(tmp_path, mnist_dir):
    result = run_trainer(trainer_args(mnist_dir, tmp_path / "model"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Task chief: single process" in result.stdout
    step, accuracy = final_accuracy(result.stdout)
    assert step == TRAIN_STEPS
    assert accuracy >= ACCURACY_FLOOR
    assert (tmp_path / "model" / "mnist.keras").is_file()
    # 15 steps per call do not divide the 50 between evaluations: the optimizer must still stop at 200.
    assert optimizer_steps(tmp_path / "model") == TRAIN_STEPS


@pytest.fixture(scope="module")
def dense_model_dir(tmp_path_factory, mnist_dir):
    """A single process run of ``--model dense`` to completion; returns (its output, its model dir)."""
    model_dir = tmp_path_factory.mktemp("dense") / "model"
    result = run_trainer(trainer_args(mnist_dir, model_dir, model="dense"))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, model_dir


def test_dense_model_trains_past_its_floor_and_exports_without_convolutions(dense_model_dir):
    import keras

    stdout, model_dir = dense_model_dir
    step, accuracy = final_accuracy(stdout)
    assert step == TRAIN_STEPS
    assert accuracy >= DENSE_ACCURACY_FLOOR, f"held-out accuracy {accuracy} < {DENSE_ACCURACY_FLOOR}"
    assert not has_convolutions(keras.models.load_model(model_dir / "mnist.keras"))
    assert json.loads((model_dir / "COMPLETE.json").read_text())["model"] == "dense"


def test_checkpoints_of_another_model_are_refused_naming_the_flag(tmp_path, dense_model_dir, mnist_dir):
    _, dense_dir = dense_model_dir
    model_dir = tmp_path / "model"
    shutil.copytree(dense_dir / "checkpoints", model_dir / "checkpoints")
    result = run_trainer(trainer_args(mnist_dir, model_dir, model="cnn"))
    assert result.returncode == 2, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error == (f"python -m trainer: error: {model_dir / 'checkpoints'}/ckpt-{TRAIN_STEPS} holds a dense "
                     "model, not the --model cnn asked for; pass --model dense to resume it, or a new --model-dir")
    assert "Traceback" not in result.stderr
    assert "Accuracy at step" not in result.stdout, "nothing may be trained or evaluated"


def test_training_stops_exactly_at_train_steps_that_divide_neither_the_evaluations_nor_the_calls(
        tmp_path, mnist_dir):
    model_dir = tmp_path / "model"
    args = trainer_args(mnist_dir, model_dir, model="dense", train_steps=37, eval_every=20,
                        steps_per_invocation=8)
    result = run_trainer(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert accuracy_steps(result.stdout) == [20, 37]
    assert optimizer_steps(model_dir) == 37
    assert json.loads((model_dir / "COMPLETE.json").read_text())["step"] == 37


def test_ps_worker_killed_mid_run_is_restarted_and_the_job_finishes(tmp_path, mnist_dir, make_cluster):
    # The coordinator re-runs a lost worker's steps on the other worker and takes the worker back when
    # its pod restarts; the variables live on the PS, so nothing is reloaded.
    steps = 2 * TRAIN_STEPS  # leave the restarted worker time to come back
    cluster = make_cluster(PS_TOPOLOGY, trainer_args(mnist_dir, tmp_path / "model", train_steps=steps))
    cluster.start_all()
    cluster.wait_for_log("master", 0, r"Saved checkpoint at step \d+", JOB_TIMEOUT_S)
    assert cluster.kill("worker", 1) == -9
    assert "Training finished" not in cluster.log("master", 0), "the kill must land mid-run"
    cluster.start("worker", 1)  # restartPolicy OnFailure
    exit_codes = cluster.supervise(JOB_TIMEOUT_S)
    assert exit_codes == {task: 0 for task in cluster.tasks}, logs(cluster)
    assert cluster.exit_codes[("master", 0)] == [0], "the chief must ride out the worker's loss"
    chief_log = cluster.log("master", 0)
    assert "Worker /job:worker/replica:0/task:1 failed" in chief_log, "the coordinator saw no failure"
    step, accuracy = final_accuracy(chief_log)
    assert step == steps and accuracy >= ACCURACY_FLOOR
    restarted = cluster.log("worker", 1).split("=== start 2 of worker:1 ===")[1]
    # Depending on how fast it came back, the new worker rejoined training or found the chief done.
    assert re.search(r"the chief (already )?finished", restarted), restarted


def test_mwms_worker_killed_mid_run_restarts_the_job_which_resumes_from_its_checkpoint(
        tmp_path, mnist_dir, make_cluster):
    # A lost peer breaks the all-reduce: the survivors exit 138 (retryable for the operator), every task
    # is restarted (restartPolicy OnFailure/ExitCode) and all of them restore the chief's last checkpoint.
    cluster = make_cluster(MWMS_TOPOLOGY, trainer_args(mnist_dir, tmp_path / "model"))
    cluster.start_all()
    saved = cluster.wait_for_log("chief", 0, r"Saved checkpoint at step (\d+)", JOB_TIMEOUT_S)
    assert cluster.kill("worker", 1) == -9
    exit_codes = cluster.supervise(JOB_TIMEOUT_S)
    assert exit_codes == {task: 0 for task in cluster.tasks}, logs(cluster)
    assert cluster.exit_codes[("chief", 0)] == [138, 0], logs(cluster)
    assert cluster.exit_codes[("worker", 0)] == [138, 0], logs(cluster)
    after_restart = cluster.log("chief", 0).split("=== start 2 of chief:0 ===")[1]
    restored = re.search(r"^Restored checkpoint at step (\d+)", after_restart, re.MULTILINE)
    assert restored, after_restart
    assert int(saved.group(1)) <= int(restored.group(1)) < TRAIN_STEPS
    step, accuracy = final_accuracy(after_restart)
    assert step == TRAIN_STEPS and accuracy >= ACCURACY_FLOOR
    for task in [("worker", 0), ("worker", 1)]:
        assert f"Restored checkpoint at step {restored.group(1)}" in cluster.log(*task)


def test_ps_killed_mid_run_the_chief_exits_138_and_resumes_from_its_checkpoint(tmp_path, mnist_dir, make_cluster):
    # A lost PS takes the variables with it: the coordinator cannot go on, so the chief exits 138 (retryable
    # for the operator's ExitCode policy too), the PS comes back (a new pod on a cluster:
    # tests/realnode/test_training_faults.py) and the restarted chief restores its last checkpoint.
    steps = 2 * TRAIN_STEPS
    cluster = make_cluster(PS_TOPOLOGY, trainer_args(mnist_dir, tmp_path / "model", train_steps=steps))
    cluster.start_all()
    wait_for_checkpoint_restarting_signal_deaths(cluster, "master", 0, JOB_TIMEOUT_S)
    assert cluster.kill("ps", 0) == -9
    assert "Training finished" not in cluster.log("master", 0), "the kill must land mid-run"
    cluster.start("ps", 0)
    exit_codes = cluster.supervise(JOB_TIMEOUT_S)
    assert exit_codes == {task: 0 for task in cluster.tasks}, logs(cluster)
    *early, lost_ps, finished = cluster.exit_codes[("master", 0)]
    assert (lost_ps, finished) == (138, 0) and all(code < 0 for code in early), logs(cluster)
    before, after = cluster.log("master", 0).split(f"=== start {len(early) + 2} of master:0 ===")
    saved = re.findall(r"^Saved checkpoint at step (\d+)$", before, re.MULTILINE)
    restored = re.search(r"^Restored checkpoint at step (\d+) ", after, re.MULTILINE)
    assert saved and restored and restored.group(1) == saved[-1], after[:3000]
    step, accuracy = final_accuracy(after)
    assert step == steps and accuracy >= ACCURACY_FLOOR


def test_serving_task_started_after_the_chief_finished_exits_at_once(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "COMPLETE.json").write_text(json.dumps({"step": TRAIN_STEPS}))
    cluster = LoopbackJob(PS_TOPOLOGY, [], tmp_path)  # only for its TF_CONFIG
    result = run_trainer(["--model-dir", str(model_dir), "--train-steps", str(TRAIN_STEPS)],
                         env={"TF_CONFIG": cluster.tf_config("worker", 1)}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"worker:1: the chief already finished ({TRAIN_STEPS} steps" in result.stdout
    assert "serving at" not in result.stdout


@pytest.mark.parametrize(("first_start", "restarted"), [("kill -SEGV $$", True), ("exit 1", False)])
def test_only_a_signal_before_the_first_checkpoint_starts_the_chief_again(tmp_path, first_start, restarted):
    # A stand-in for the trainer (the launcher runs instead of it): its first start ends as
    # FIRST_START does, the next one prints its checkpoint and waits.
    flag = tmp_path / "started-once"
    stand_in = (f'if [ ! -e {flag} ]; then touch {flag}; {first_start}; fi; '
                'echo "Saved checkpoint at step 1"; exec sleep 60')
    cluster = LoopbackJob({"master": 1}, [], tmp_path, launcher=["bash", "-c", stand_in])
    cluster.start_all()
    try:
        if restarted:
            wait_for_checkpoint_restarting_signal_deaths(cluster, "master", 0, 30)
            assert cluster.exit_codes[("master", 0)] == [-11] and cluster.starts[("master", 0)] == 2
        else:
            with pytest.raises(RuntimeError, match=r"exited \(1\)"):
                wait_for_checkpoint_restarting_signal_deaths(cluster, "master", 0, 30)
            assert cluster.starts[("master", 0)] == 1
    finally:
        if cluster.process("master", 0).poll() is None:
            cluster.kill("master", 0)
