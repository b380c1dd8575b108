"""Prior training with torch DDP (``priors/distributed.py``): two processes of one thread train the
weights one process trains with the same global batch; a failing rank stops them all."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from musicgym.errors import ArgumentError
from musicgym.priors.registry import read_checkpoint as load_checkpoint
from musicgym.priors.train import train
from tests.test_prior import jsb_file, tiny_train_config  # noqa: F401  (jsb_file: a fixture)

if not torch.distributed.is_available():
    pytest.skip(
        "torch.distributed is not available in this build of torch", allow_module_level=True
    )

from musicgym.priors.distributed import launch
from musicgym.priors.replicas import Replicas
from tests.cli_runner import HANG


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"]
    for name, weight in first["state_dict"].items():
        torch.testing.assert_close(second["state_dict"][name], weight, rtol=0, atol=atol)


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(jsb_file, tmp_path):  # noqa: F811
    # No dropout: each process draws its own masks. 4 segments: 2 per process.
    one = tiny_train_config(jsb_file, tmp_path / "one", max_steps=5, valid_every=5, dropout=0.0)
    assert one.batch_size == 4 and one.threads == 1
    train(one)
    summary = launch(dataclasses.replace(one, run_dir=str(tmp_path / "two")), 2)
    assert summary["step"] == 5
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "two" / "last.pt", atol=1e-5)
    start = tiny_train_config(jsb_file, tmp_path / "start", max_steps=1, valid_every=1, dropout=0)
    train(start)  # the weights moved well past 1e-5 in 5 steps: the equality is not trivial
    moved = load_checkpoint(tmp_path / "start" / "last.pt")["state_dict"]
    last = load_checkpoint(tmp_path / "one" / "last.pt")["state_dict"]
    assert max(float((last[k] - moved[k]).abs().max()) for k in last) > 1e-3
    assert sorted(p.name for p in (tmp_path / "two").iterdir() if p.suffix == ".pt") == [
        "best.pt",
        "last.pt",
    ]


def test_a_two_process_run_resumes_where_it_stopped(jsb_file, tmp_path):  # noqa: F811
    config = tiny_train_config(jsb_file, tmp_path / "ddp", max_steps=3, valid_every=3, dropout=0.0)
    launch(config, 2)
    launch(dataclasses.replace(config, max_steps=6, resume=True), 2)
    straight = dataclasses.replace(config, run_dir=str(tmp_path / "one"), max_steps=6)
    train(straight)
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "ddp" / "last.pt", atol=1e-5)


def test_torchrun_trains_the_weights_of_one_process(jsb_file, tmp_path):  # noqa: F811
    one = tiny_train_config(jsb_file, tmp_path / "one", max_steps=4, valid_every=4, dropout=0.0)
    train(one)
    options = [
        "--data", one.data, "--run-dir", str(tmp_path / "torchrun"), "--resolution", "1",
        "--lowest-pitch", "55", "--num-pitches", "24", "--time-sizes", "8", "--note-sizes", "6",
        "--dropout", "0", "--learning-rate", str(one.learning_rate), "--batch-size", "4",
        "--segment-bars", "2", "--valid-every", "4", "--max-steps", "4", "--threads", "1",
        "--no-progress",
    ]  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    run = subprocess.run(
        [*launcher, "-m", "musicgym.priors.train", *options],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"step": 4') == 1  # rank 0 alone prints the summary
    assert_same_weights(tmp_path / "one" / "last.pt", tmp_path / "torchrun" / "last.pt", 1e-5)


def test_shares_split_the_batch_and_weight_the_global_frames():
    segments = torch.arange(5).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    mask = torch.tensor([[1.0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 0, 0], [0, 1, 1]])
    shares = [Replicas(rank, 2).share(segments, mask) for rank in range(2)]
    assert [s[0][:, 0, 0, 0].tolist() for s in shares] == [[0, 1], [2, 3, 4]]
    assert all(float(frames) == 11 / 2 for _, _, frames in shares)
    one = Replicas().share(segments, mask)
    assert one[0] is segments and float(one[2]) == 11


def _check_same(rank: int, port: int, value: int, answers) -> None:
    from musicgym.priors.replicas import process_group

    with process_group("cpu", rank, 2, f"tcp://127.0.0.1:{port}") as replica:
        try:
            replica.same(value, "not the same")
            answers.put((rank, "same"))
        except ArgumentError as error:
            answers.put((rank, str(error)))


@pytest.mark.parametrize("values, answer", [((7, 7), "same"), ((7, 0), "not the same")])
def test_every_process_learns_whether_a_value_is_the_same_in_all(values, answer):
    import multiprocessing

    from musicgym.priors.distributed import _free_port

    context = multiprocessing.get_context("spawn")
    answers, port = context.Queue(), _free_port()
    workers = [
        context.Process(target=_check_same, args=(rank, port, values[rank], answers))
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(HANG)
    assert sorted(answers.get(timeout=HANG) for _ in workers) == [(0, answer), (1, answer)]


@pytest.mark.parametrize(
    "overrides, processes, message",
    [
        ({"batch_size": 1}, 2, "--batch-size 1: fewer segments than the 2 processes"),
        ({}, 0, "--ddp: expected an integer >= 1"),
        ({"device": "meta"}, 2, "device: 'meta': use cpu or cuda"),
    ],
)
def test_bad_settings_are_refused_before_any_process_starts(
    jsb_file,  # noqa: F811
    tmp_path,
    overrides,
    processes,
    message,
):
    with pytest.raises(ArgumentError, match=message):
        launch(tiny_train_config(jsb_file, tmp_path / "run", **overrides), processes)


def _musicgym(*args: str) -> list[str]:
    return [sys.executable, "-m", "musicgym.cli", *args]


def test_bad_input_in_every_rank_is_one_line(tmp_path):
    run = subprocess.run(
        _musicgym(
            "prior", "train", "--ddp", "2", "--data", "no-such-data", "--run-dir", str(tmp_path)
        ),
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1  # whichever rank reports first; the other is stopped
    assert re.search(r"--ddp 2: rank [01] failed \(unknown dataset 'no-such-data'", lines[0])


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def _workers(pid: int) -> list[int]:
    """The training processes of ``--ddp`` (not multiprocessing's resource tracker)."""
    return [
        child
        for child in _children(pid)
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_rank_that_dies_stops_every_rank_with_one_line_and_whole_checkpoints(
    jsb_file,  # noqa: F811
    tmp_path,
):
    run_dir = tmp_path / "run"
    options = tiny_train_config(jsb_file, run_dir, max_steps=100_000, valid_every=2)
    argv = _musicgym(
        "prior", "train", "--ddp", "2", "--data", options.data, "--run-dir", str(run_dir),
        "--resolution", "1", "--lowest-pitch", "55", "--num-pitches", "24", "--time-sizes", "8",
        "--note-sizes", "6", "--batch-size", "4", "--segment-bars", "2", "--valid-every", "2",
        "--max-steps", "100000", "--threads", "1", "--no-progress",
    )  # fmt: skip
    launcher = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + HANG
        while not (run_dir / "last.pt").exists() and time.monotonic() < deadline:
            assert launcher.poll() is None, launcher.communicate()
            time.sleep(0.2)
        workers = _workers(launcher.pid)
        assert len(workers) == 2
        os.kill(max(workers), signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=HANG)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "failed (exited with signal SIGKILL); stopped the other ranks" in lines[0]
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)
    checkpoint = load_checkpoint(run_dir / "last.pt")  # whole: it loads
    assert checkpoint["step"] >= 2
    assert not [p for p in run_dir.iterdir() if ".tmp" in p.name]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"
