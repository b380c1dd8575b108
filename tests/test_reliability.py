"""Runs that lose nothing (issue 14), tried as a user would: the ``musicgym`` command in a child
process (``tests/cli_runner.py``), asserting its exit status, one line on stderr, no traceback,
and what is on disk afterwards; and kill-and-resume against an uninterrupted run with the same
seed, bit for bit, for the RL Tuner, an SB3 baseline and prior training."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicgym.agents.common import read_agent_info
from musicgym.errors import EnvArgumentError, Interrupted
from musicgym.fileio import atomic_output, umask
from musicgym.priors.registry import save_checkpoint
from musicgym.runs import LOCK_FILE, claim_run_folder
from tests.cli_runner import CLI, wait_for
from tests.test_agents import RL_TUNER_SMALL, SB3_SMALL, tiny_prior
from tests.test_chorale_agents import tiny_chorale_prior

TRAIN = ["agent", "train", "--no-progress"]
SMALL = [
    *("--num-envs", "4", "--learning-starts", "32", "--buffer-size", "2000"),
    *("--eval-interval", "64", "--eval-melodies", "2", "--checkpoint-interval", "64"),
]


@pytest.fixture(scope="module")
def cli() -> CLI:
    return CLI()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny prior checkpoint (and one for chorales), a tiny JSB-format dataset, a MIDI file
    and a plain file."""
    folder = tmp_path_factory.mktemp("files")
    save_checkpoint(folder / "tiny.pt", tiny_prior())
    save_checkpoint(folder / "chorale.pt", tiny_chorale_prior())
    rng = np.random.default_rng(0)
    chords = [[60, 64, 67], [62, 65, 69], [59, 62, 67], [60, 64, 67, 72]]
    data = {
        split: [[chords[(t // 2) % 4] for t in range(int(rng.integers(12, 24)))] for _ in range(n)]
        for split, n in (("train", 6), ("valid", 2), ("test", 2))
    }
    (folder / "jsb.json").write_text(json.dumps(data))
    from musicgym.music.midi import write_melody

    write_melody([14, 1, 16, 0, 18, 1], folder / "melody.mid")
    (folder / "plain.txt").write_text("not a folder\n")
    return folder


def rl_tuner(out, files, steps=64, *extra) -> list[str]:
    return [
        *TRAIN,
        "--algo",
        "rltuner-q",
        "--steps",
        steps,
        "--out",
        out,
        "--prior",
        files / "tiny.pt",
        *SMALL,
        *extra,
    ]


def prior_train(run_dir, files, steps=3, *extra) -> list[str]:
    return [
        *("prior", "train", "--data", f"jsb:{files / 'jsb.json'}", "--run-dir", run_dir),
        *("--resolution", "1", "--lowest-pitch", "55", "--num-pitches", "24"),
        *("--time-sizes", "8", "--note-sizes", "6", "--batch-size", "4", "--segment-bars", "2"),
        *("--valid-every", "3", "--max-steps", steps, "--threads", "1", "--no-progress", *extra),
    ]


def checkpoint_step(path) -> int:
    return int(torch.load(path, weights_only=True)["step"])


# ------------------------------------------------------------------------------- run folders
def test_a_run_folder_is_never_overwritten_without_resume_or_overwrite(cli, files, tmp_path):
    assert cli.run(rl_tuner("run", files), tmp_path).code == 0
    before = (tmp_path / "run" / "agent.pt").read_bytes()
    cli.run(rl_tuner("run", files, 32), tmp_path).assert_one_line_error(
        "run: holds a run (agent.json, agent.pt", "--resume", "--overwrite"
    )
    cli.run([*rl_tuner("run", files), "--resume", "--overwrite"], tmp_path).assert_one_line_error(
        "choose one"
    )
    assert (tmp_path / "run" / "agent.pt").read_bytes() == before
    assert cli.run([*rl_tuner("run", files, 32), "--overwrite"], tmp_path).code == 0
    assert read_agent_info(tmp_path / "run")["trained_steps"] == 32
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1  # the old ones went

    assert cli.run(prior_train("prior", files), tmp_path).code == 0
    last = (tmp_path / "prior" / "last.pt").read_bytes()
    cli.run(prior_train("prior", files, 2), tmp_path).assert_one_line_error(
        "prior: holds a run (best.pt, last.pt", "--run-dir"
    )
    assert (tmp_path / "prior" / "last.pt").read_bytes() == last


def test_a_second_process_is_locked_out_and_sigint_or_sigterm_checkpoint(cli, files, tmp_path):
    first = cli.start(rl_tuner("run", files, 100_000), tmp_path)
    wait_for(lambda: (tmp_path / "run" / "agent.pt").exists())
    cli.run([*rl_tuner("run", files), "--resume"], tmp_path).assert_one_line_error(
        f"run: in use by pid {first.process.pid} on ", LOCK_FILE
    )
    first.signal(signal.SIGINT)
    stopped = first.wait()
    assert stopped.code == 130 and "Traceback" not in stopped.stderr
    (line,) = stopped.stderr.splitlines()
    step = checkpoint_step(tmp_path / "run" / "agent.pt")
    assert line == (
        f"musicgym: SIGINT at step {step}: checkpoint written to run/agent.pt; continue with "
        "--resume"
    )
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    stale = tmp_path / "run" / ".agent.pt.k3j5a9_b.tmp.pt"  # an interrupted write's leftover
    stale.write_bytes(b"half a checkpoint")
    resumed = cli.run([*rl_tuner("run", files, step + 32), "--resume"], tmp_path)
    assert resumed.code == 0 and checkpoint_step(tmp_path / "run" / "agent.pt") == step + 32
    assert not stale.exists()

    second = cli.start(prior_train("prior", files, 100_000), tmp_path)
    wait_for(lambda: (tmp_path / "prior" / "last.pt").exists())
    second.signal(signal.SIGTERM)
    stopped = second.wait()
    assert stopped.code == 143 and stopped.stderr.startswith("musicgym: SIGTERM at step ")
    assert len(stopped.errors) == 1


def test_sigint_stops_a_bench_of_runs_side_by_side_at_their_checkpoints(cli, files, tmp_path):
    """``bench --jobs 2``: SIGINT to the bench alone reaches its workers, each run writes its
    checkpoint with the replay, the bench says so in one line and exits 130; the same command
    goes on with the runs, exactly (no warning of a periodic checkpoint)."""

    def bench(steps: int) -> list[str]:
        return [
            *("bench", "agents", "--agents", "rltuner-q", "--seeds", "0,1", "--jobs", "2"),
            *("--steps", steps, "--pieces", "2", "--prior", files / "tiny.pt", "--no-progress"),
            *("--hyperparameters", json.dumps(RL_TUNER_SMALL), "--out", "b"),
        ]

    first = cli.start(bench(100_000), tmp_path)
    runs = [tmp_path / "b" / "runs" / f"rltuner-q-seed{seed}" for seed in (0, 1)]
    wait_for(lambda: all((run / "agent.pt").exists() for run in runs))
    first.signal(signal.SIGINT)
    stopped = first.wait()
    assert stopped.code == 130 and "Traceback" not in stopped.stderr, stopped.stderr
    assert stopped.errors == [
        "musicgym: SIGINT during the bench: each run wrote its checkpoint under b/runs; the same "
        "command goes on with them"
    ]
    steps = []
    for run in runs:
        checkpoint = torch.load(run / "agent.pt", weights_only=True)
        assert "replay" in checkpoint  # the final checkpoint, not a periodic one
        assert not (run / LOCK_FILE).exists()
        steps.append(int(checkpoint["step"]))
    resumed = cli.run(bench(max(steps) + 32), tmp_path)
    assert resumed.code == 0 and "warning" not in resumed.stderr, resumed.stderr
    assert [read_agent_info(run)["trained_steps"] for run in runs] == [max(steps) + 32] * 2


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "pass"])
    holder.wait()  # its pid no longer runs
    lock = {"pid": holder.pid, "host": os.uname().nodename, "started": "t", "command": "c"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(lock))
    with claim_run_folder(tmp_path, resume=False, overwrite=False, run_files=["agent.pt"]):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"took over the stale lock of pid {holder.pid}" in capsys.readouterr().err
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_get_the_processs_usual_permissions(tmp_path, mask):
    previous = os.umask(mask)
    try:
        assert umask() == mask
        with atomic_output(tmp_path / "card.json") as temporary:
            temporary.write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "card.json").stat().st_mode) == 0o666 & ~mask


# ----------------------------------------------------------------- one line, exit 2, nothing
ERRORS = [
    (["--steps", "-5"], "--steps: expected an integer >= 1, got -5"),
    (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
    (["--gamma", "nan"], "--gamma: expected a finite number >= 0 <= 1, got nan"),
    (["--learning-rate", "inf"], "--learning-rate: expected a finite number > 0"),
    (["--rules", "key=nan"], "the weight of 'key' is nan, not finite"),
    (["--c", "-1"], "--c: expected a finite number > 0"),
    (["--seed", "-1"], "--seed: expected an integer >= 0"),
    (["--num-envs", "2.5"], "argument --num-envs: invalid int value: '2.5'"),
    (["--buffer-size", "10"], "buffer_size must hold at least one melody"),
    (["--device", "nonsense"], "device: 'nonsense' is not a torch device"),
]


@pytest.mark.parametrize(("extra", "message"), ERRORS, ids=[e[0][0] for e in ERRORS])
def test_bad_training_arguments_are_one_line(cli, files, tmp_path, extra, message):
    cli.run([*rl_tuner("new", files), *extra], tmp_path).assert_one_line_error(message)
    assert not (tmp_path / "new").exists()


def test_cuda_asked_for_without_a_gpu_is_one_line(cli, files, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    message = "device: 'cuda' asked for, but this machine has no CUDA GPU"
    cli.run([*rl_tuner("new", files), "--device", "cuda"], tmp_path).assert_one_line_error(message)
    import gymnasium as gym

    with pytest.raises(EnvArgumentError, match=message):
        gym.make("MusicComposition-v0", prior=None, device="cuda")


def test_other_commands_check_their_arguments_in_one_line(cli, files, tmp_path):
    compose = ["agent", "compose", "--out", "melodies", "--agent"]
    ppo = [*TRAIN, "--algo", "sb3-ppo", "--steps", "9", "--out", "x", "--hyperparameters"]
    sample = ["prior", "sample", "--checkpoint", files / "tiny.pt", "--out", "x.mid"]
    for args, message in [
        ([*compose, "random", "--n", "-1"], "argument --n: expected an integer >= 1"),
        ([*compose, "prior", "--length", "0"], "argument --length: expected"),
        ([*compose, "nowhere"], "nowhere: no agent.json"),
        ([*compose, files / "plain.txt"], "not a readable checkpoint"),
        (["agent", "compose", "--agent", "random", "--out", files / "plain.txt"], "is a file"),
        ([*ppo, '{"gama": 0.9}'], "'gama' not an argument of PPO"),
        ([*ppo, '{"batch_size": 0}'], "PPO refused them"),
        ([*TRAIN, "--algo", "rltuner-q", "--out", files / "plain.txt"], "is a file, not a folder"),
        ([*sample, "--steps", "0"], "argument --steps: expected an integer >= 1"),
        ([*sample, "--temperature", "nan"], "argument --temperature: expected a finite number"),
        ([*prior_train("p", files), "--dropout", "1"], "--dropout: expected a finite number"),
        ([*prior_train("p", files), "--time-sizes", "0"], "--time-sizes: expected an integer"),
        (["midi", "render", "missing.mid", "--png", "x.png"], "missing.mid"),
        (
            ["bench", "chorales", "--weights", "--percentile", "101"],
            "argument --percentile: expected a finite number >= 0 <= 100",
        ),
        (["bench", "chorales", "--percentile", "99"], "--percentile: only with --weights"),
    ]:
        cli.run(args, tmp_path).assert_one_line_error(message)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_resume_refuses_other_settings_in_one_line(cli, files, tmp_path):
    assert cli.run(rl_tuner("run", files, 32), tmp_path).code == 0
    assert cli.run(prior_train("prior", files), tmp_path).code == 0
    before = (tmp_path / "run" / "agent.pt").read_bytes()
    resume = [*rl_tuner("run", files, 64), "--resume"]
    for extra, message in [
        (["--algo", "rltuner-psi"], "--algo rltuner-q -> rltuner-psi"),
        (["--seed", "7", "--gamma", "0.9"], "--seed 1 -> 7; --gamma 0.5 -> 0.9. Only --steps"),
        (["--prior", "bach16"], f"--prior {files / 'tiny.pt'} -> bach16"),
    ]:
        cli.run([*resume, *extra], tmp_path).assert_one_line_error("run: --resume with", message)
    assert (tmp_path / "run" / "agent.pt").read_bytes() == before
    cli.run(
        [*prior_train("prior", files, 6), "--resume", "--time-sizes", "9", "9"], tmp_path
    ).assert_one_line_error("--time-sizes 8 -> 9 9")
    (tmp_path / "run" / "agent.pt").write_bytes(before[: len(before) // 2])  # a damaged file
    cli.run(resume, tmp_path).assert_one_line_error("run/agent.pt: not a readable checkpoint")


@pytest.fixture
def read_only(tmp_path):
    """A folder on which writes fail: a read-only mount where root may mount (root ignores
    permissions), else a folder without write permission."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("root without the right to mount: cannot make a read-only folder")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_folder_is_one_line_that_says_what_to_do(cli, files, tmp_path, read_only):
    advice = "read-only" if os.geteuid() == 0 else "permission denied"
    for args in [
        rl_tuner(read_only / "run", files),
        [*TRAIN, "--algo", "sb3-ppo", "--steps", "9", "--out", read_only / "run"],
        ["agent", "compose", "--agent", "random", "--out", read_only / "melodies"],
        prior_train(read_only / "prior", files),
        ["prior", "sample", "--checkpoint", files / "tiny.pt", "--out", read_only / "x.mid"],
        ["midi", "render", files / "melody.mid", "--png", read_only / "x.png"],
    ]:
        cli.run(args, tmp_path).assert_one_line_error(str(read_only), advice)


def test_a_full_disk_keeps_the_last_checkpoint_and_is_one_line(cli, files, tmp_path):
    """A write that fails half way (here past the file-size limit, as on a full disk) leaves the
    previous checkpoint and no temporary file."""
    assert cli.run(rl_tuner("run", files, 32), tmp_path).code == 0
    resume = [*rl_tuner("run", files, 64), "--resume"]
    cli.run(resume, tmp_path, file_size=1_000_000).assert_one_line_error(
        "run/agent.pt: the checkpoint could not be written", "free some space"
    )
    assert checkpoint_step(tmp_path / "run" / "agent.pt") == 32
    assert not list((tmp_path / "run").glob(".*tmp*"))
    cli.run(prior_train("prior", files), tmp_path, file_size=20_000).assert_one_line_error(
        "prior/", ".pt: the checkpoint could not be written"
    )


def test_render_mode_human_prints_the_melody(capsys):
    import gymnasium as gym

    env = gym.make("MusicComposition-v0", prior=None, render_mode="human", length=4)
    env.reset(seed=0)
    env.step(14)
    assert capsys.readouterr().out.splitlines()[-1] == "C4"


# --------------------------------------------------------------- kill, resume, bit for bit
@pytest.mark.parametrize("piece", ["melody", "chorale", "phrases"])
def test_rl_tuner_killed_at_a_random_step_resumes_bit_for_bit(cli, files, tmp_path, piece):
    """SIGKILL at a random step (after a random number of checkpoints), then --resume: the
    networks, Adam's moments, the replay memory (its summaries recomputed: no warning) and the
    pieces composed equal an uninterrupted run's, for melodies and chorales alike, and for
    chorales learnt on phrases (of bwv346: 16 to 28 frames, each primed by its own 28 to 188; in
    one environment, so that several phrases end in 224 decisions)."""
    steps = ["--checkpoint-interval", "32", "--train-frequency", "3", "--checkpoint-replay"]
    if piece != "melody":
        chorales = ["--env", "ChoraleComposition-v0", "--bars", "1", "--buffer-size", "40"]
        steps += [*chorales, "--prior", files / "chorale.pt"]  # the last --prior counts
    if piece == "phrases":  # the last --bars and --num-envs count too
        steps += ["--phrases", "--primer", "chorale:bwv346", "--bars", "2", "--num-envs", "1"]
    run = rl_tuner("straight", files, 224, *steps)
    assert cli.run(run, tmp_path).code == 0
    run[run.index("straight")] = "killed"
    killed = cli.start(run, tmp_path)
    checkpoints = int(np.random.default_rng().integers(1, 5))
    wait_for(lambda: read_agent_info_step(tmp_path / "killed") >= 32 * checkpoints)
    killed.signal(signal.SIGKILL)
    assert killed.wait().code == 137
    assert 0 < checkpoint_step(tmp_path / "killed" / "agent.pt") < 224
    resumed = cli.run([*run, "--resume"], tmp_path)
    assert resumed.code == 0, resumed.stderr
    assert "took over the stale lock" in resumed.stderr and "warning" not in resumed.stderr
    straight = torch.load(tmp_path / "straight" / "agent.pt", weights_only=True)
    again = torch.load(tmp_path / "killed" / "agent.pt", weights_only=True)
    for part in ("q_state_dict", "target_state_dict", "replay"):
        for name, value in straight[part].items():
            saved = again[part][name]
            assert torch.equal(saved, value) if torch.is_tensor(value) else saved == value, name
    for index, moments in straight["optimizer"]["state"].items():
        assert all(
            torch.equal(again["optimizer"]["state"][index][k], v) for k, v in moments.items()
        )
    assert straight["updates"] == again["updates"] and straight["rng"] == again["rng"]
    if piece == "phrases":  # a phrase ended and the next one, with its own primer, began
        assert (straight["replay"]["piece_last"] >= 0).sum() > 1
    compose = ["agent", "compose", "--n", "2", "--seed", "3", "--agent"]
    assert cli.run([*compose, "straight", "--out", "a"], tmp_path).code == 0
    assert cli.run([*compose, "killed", "--out", "b"], tmp_path).code == 0
    kind = "melody" if piece == "melody" else "chorale"
    pieces = sorted(path.name for path in (tmp_path / "a").glob(f"{kind}_*.mid"))
    assert len(pieces) == 2 and all(
        (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        for name in pieces
    )


def read_agent_info_step(folder) -> int:
    try:
        return int(read_agent_info(folder)["trained_steps"])
    except Exception:
        return 0


def interrupt_at(call: int, obj, method: str, monkeypatch, counts=lambda self: True) -> None:
    """SIGINT this process during the ``call``-th call of ``obj.method`` (of those that
    ``counts``)."""
    original, calls = getattr(obj, method), [0]

    def interrupted(self, *args, **kwargs):
        calls[0] += counts(self)
        if calls[0] == call and counts(self):
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(obj, method, interrupted)


@pytest.mark.parametrize("checkpoint_replay", [False, True])
def test_rl_tuner_periodic_checkpoints_hold_the_replay_only_when_asked(
    tmp_path, monkeypatch, checkpoint_replay
):
    """The replay memory is the bulk of a checkpoint: the last one holds it (``--resume`` goes
    on exactly), the periodic ones only with ``checkpoint_replay``."""
    from musicgym.agents.rl_tuner import RLTunerConfig, train
    from musicgym.agents.rl_tuner.loop import TrainingRun

    saved, save = [], TrainingRun.save
    monkeypatch.setattr(
        TrainingRun,
        "save",
        lambda self, with_replay=True: saved.append(with_replay) or save(self, with_replay),
    )
    settings = {**RL_TUNER_SMALL, "checkpoint_interval": 32, "checkpoint_replay": checkpoint_replay}
    agent = train(RLTunerConfig(steps=96, **settings), tmp_path, prior=tiny_prior(), progress=False)
    assert saved == [checkpoint_replay] * 3 + [True]  # at 32, 64 and 96, then at the end
    checkpoint = torch.load(tmp_path / "agent.pt", weights_only=True)
    assert agent.replay_size == sum(
        t.nbytes for t in checkpoint["replay"].values() if torch.is_tensor(t)
    )
    assert 0 < agent.replay_size < agent.checkpoint_size == (tmp_path / "agent.pt").stat().st_size


def test_rl_tuner_resumes_a_checkpoint_without_its_replay_with_a_warning(cli, files, tmp_path):
    assert cli.run(rl_tuner("run", files, 64), tmp_path).code == 0
    path = tmp_path / "run" / "agent.pt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["replay"]  # as a periodic checkpoint that a kill left
    torch.save(checkpoint, path)
    resumed = cli.run([*rl_tuner("run", files, 96), "--resume"], tmp_path)
    assert resumed.code == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "written without the replay memory" in warnings[0], warnings
    assert "with an empty replay memory and new pieces" in warnings[0]
    assert checkpoint_step(path) >= 96 and "replay" in torch.load(path, weights_only=True)


def test_rl_tuner_steps_round_up_to_whole_vector_steps(cli, files, tmp_path):
    """``num_envs`` melodies step together: 66 steps on 4 environments train 68, and the
    command says so (the README says how steps round)."""
    result = cli.run(rl_tuner("run", files, 66), tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("rltuner-q: 68 steps in run")
    assert "checkpoint " in result.stdout and "of which the replay memory" in result.stdout


def test_rl_tuner_progress_bar_ends_at_100_percent_of_the_steps_trained():
    from types import SimpleNamespace

    from musicgym.agents.rl_tuner.loop import ProgressBar

    run = SimpleNamespace(config=SimpleNamespace(steps=66), global_step=0)
    run.agent = SimpleNamespace(updates=0)
    bar = ProgressBar()
    bar.on_training_start(run)
    for run.global_step in (16, 32, 48, 64, 68):  # 4 environments, 2 of them resetting once
        bar.on_step(run, [])
    assert bar.bar.n == bar.bar.total == 68
    bar.on_training_end(run)


@pytest.mark.parametrize(
    "settings",
    [
        {"algo": "q"},
        {"algo": "g", "primer": "random_note", "exploration": "boltzmann"},
        {"algo": "q", "primer": "random_note", "rule_features": True},
    ],
    ids=["q", "g-boltzmann-primed", "q-rule-features"],
)
def test_rl_tuner_interrupted_at_a_random_step_resumes_bit_for_bit(tmp_path, settings):
    from musicgym.agents.rl_tuner import RLTunerConfig, train
    from musicgym.envs.stepper import melody_statistics

    prior = tiny_prior()
    config = RLTunerConfig(steps=160, **settings, **{**RL_TUNER_SMALL, "train_frequency": 3})
    straight = train(config, tmp_path / "a", prior=prior, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        from musicgym.envs.melody import MusicCompositionVectorEnv

        seed = sum(map(ord, str(settings)))  # a seeded kill point per case, reproducible
        stop = int(np.random.default_rng(seed).integers(9, 40))  # of 41 calls, learning from 8th
        interrupt_at(stop, MusicCompositionVectorEnv, "step", patch)
        with pytest.raises(Interrupted, match=r"SIGINT at step \d+: checkpoint written to"):
            train(config, tmp_path / "b", prior=prior, progress=False)
    resumed = train(config, tmp_path / "b", resume=True, progress=False)
    for name, tensor in straight.q_network.state_dict().items():
        assert torch.equal(resumed.q_network.state_dict()[name], tensor), name
    for name, tensor in straight.target_network.state_dict().items():
        assert torch.equal(resumed.target_network.state_dict()[name], tensor), name
    melodies = straight.compose(16, seed=5)
    assert resumed.compose(16, seed=5) == melodies
    assert melody_statistics(prior, melodies) == melody_statistics(
        resumed.prior, resumed.compose(16, seed=5)
    )
    a, b = (torch.load(tmp_path / x / "agent.pt", weights_only=True) for x in "ab")
    assert all(torch.equal(a["replay"][k], b["replay"][k]) for k in ("tokens", "log_probs"))
    assert torch.equal(a["resume"]["episode_returns"], b["resume"]["episode_returns"])


def test_rl_tuner_checkpoint_of_the_earlier_layout_resumes_bit_for_bit(tmp_path):
    """A checkpoint written before the RL Tuner read the prior through the environment (its
    melodies' own stepper, the slots' rows and RecordEpisodeStatistics' fields in "resume")
    resumes to the same weights as an uninterrupted run."""
    from musicgym.agents.rl_tuner import RLTunerConfig, train
    from musicgym.envs.melody import MusicCompositionVectorEnv

    prior = tiny_prior()
    config = RLTunerConfig(steps=160, **{**RL_TUNER_SMALL, "train_frequency": 3})
    straight = train(config, tmp_path / "a", prior=prior, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        interrupt_at(20, MusicCompositionVectorEnv, "step", patch)
        with pytest.raises(Interrupted):
            train(config, tmp_path / "b", prior=prior, progress=False)
    path = tmp_path / "b" / "agent.pt"
    checkpoint = torch.load(path, weights_only=True)
    resume = checkpoint["resume"]
    resume["rows"] = checkpoint["replay"].pop("slots")
    returns = resume.pop("episode_returns")
    resume["episode_statistics"] = {"episode_returns": returns}
    resume["melodies"] = {"stepper": {}}  # the agent's own copy, no longer read
    torch.save(checkpoint, path)
    resumed = train(config, tmp_path / "b", resume=True, progress=False)
    for name, tensor in straight.q_network.state_dict().items():
        assert torch.equal(resumed.q_network.state_dict()[name], tensor), name


def test_a_run_keeps_its_rules_weights_when_a_preset_changes(tmp_path, monkeypatch):
    """A run keeps its rules spelled out, every rule with its weight: after its preset changes,
    ``--resume`` with the preset's name is refused in one line naming the weight that moved,
    and the run loads with its own weights; a run saved when runs kept the preset's name
    resumes as before."""
    from musicgym.agents.rl_tuner import RLTuner, RLTunerConfig, train
    from musicgym.errors import RunFolderError
    from musicgym.rules import PRESETS

    prior = tiny_prior()
    config = RLTunerConfig(steps=32, rules="jaques2017", **RL_TUNER_SMALL)
    assert config.rules.startswith("key=1,tonic=3,excessive_repetition=100")
    train(config, tmp_path / "a", prior=prior, progress=False)
    monkeypatch.setitem(PRESETS, "jaques2017", {**PRESETS["jaques2017"], "tonic": 4.0})
    changed = RLTunerConfig(steps=64, rules="jaques2017", **RL_TUNER_SMALL)
    with pytest.raises(RunFolderError, match=r"--rules key=1,tonic=3,.* -> key=1,tonic=4,"):
        train(changed, tmp_path / "a", resume=True, progress=False)
    assert RLTuner.load(tmp_path / "a")[0].config.rules == config.rules
    monkeypatch.undo()
    path = tmp_path / "a" / "agent.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["rules"] = "jaques2017"  # as a run saved it before
    torch.save(checkpoint, path)
    resumed = train(replace(config, steps=64), tmp_path / "a", resume=True, progress=False)
    assert resumed.config.rules == config.rules


SB3_RESUMED = ["dqn", "ppo"] + ["a2c", "qrdqn", "recurrentppo"] * ("MUSICGYM_ALL_SB3" in os.environ)


@pytest.mark.parametrize("algo", SB3_RESUMED)
def test_sb3_interrupted_at_a_random_step_resumes_bit_for_bit(tmp_path, algo):
    """DQN: epsilon-greedy draws, replay sampling and the environments restored; PPO: action
    sampling and minibatch order. SIGINT stops at the end of the rollout in progress (DQN: 4
    steps of 2 envs; PPO: 16 steps of 2 envs)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from musicgym.agents.baselines import SB3Config, train

    prior = tiny_prior()
    small = {"num_envs": 2, "eval_interval": 24, "eval_episodes": 2, "checkpoint_interval": 32}
    hyperparameters = json.dumps(SB3_SMALL[algo])
    config = SB3Config(
        algo=algo, steps=144, primer="random_note", hyperparameters=hyperparameters, **small
    )
    straight = train(config, tmp_path / "a", prior=prior, progress=False)
    with pytest.MonkeyPatch.context() as patch:
        stop = int(np.random.default_rng().integers(18, 56))  # after learning starts (32 steps)
        training_env = lambda envs: envs.num_envs == 2  # noqa: E731  (not the evaluation env)
        interrupt_at(stop, DummyVecEnv, "step_wait", patch, training_env)
        with pytest.raises(Interrupted, match="SIGINT at step"):
            train(config, tmp_path / "b", prior=prior, progress=False)
    resumed = train(config, tmp_path / "b", resume=True, prior=prior, progress=False)
    for name, tensor in straight.policy.state_dict().items():
        assert torch.equal(resumed.policy.state_dict()[name], tensor), name
    optimizer = straight.policy.optimizer.state_dict()["state"]
    for index, moments in resumed.policy.optimizer.state_dict()["state"].items():
        assert all(torch.equal(value, optimizer[index][key]) for key, value in moments.items())
    assert resumed.num_timesteps == straight.num_timesteps and resumed._n_updates == (
        straight._n_updates
    )


def test_sb3_resume_falls_back_past_a_damaged_newest_checkpoint(tmp_path, capsys):
    from musicgym.agents.baselines import CHECKPOINTS, SB3Config, train

    prior = tiny_prior()
    small = {"num_envs": 2, "eval_interval": 10**6, "checkpoint_interval": 32}
    hyperparameters = json.dumps(SB3_SMALL["ppo"])
    train(
        SB3Config(algo="ppo", steps=96, hyperparameters=hyperparameters, **small),
        tmp_path,
        prior=prior,
        progress=False,
    )
    newest = tmp_path / CHECKPOINTS / "model_96_steps.zip"
    newest.write_bytes(newest.read_bytes()[:-10] + b"x" * 10)
    config = SB3Config(algo="ppo", steps=128, hyperparameters=hyperparameters, **small)
    model = train(config, tmp_path, resume=True, prior=prior, progress=False)
    assert model.num_timesteps == 128
    assert "model_96_steps.zip: damaged (its SHA-256 differs)" in capsys.readouterr().err


def test_prior_training_interrupted_at_a_random_step_resumes_bit_for_bit(files, tmp_path):
    from musicgym.priors.train import SegmentSampler, TrainConfig, train

    def config(run_dir, **overrides) -> TrainConfig:
        return TrainConfig(
            data=f"jsb:{files / 'jsb.json'}",
            run_dir=str(tmp_path / run_dir),
            resolution=1,
            lowest_pitch=55,
            num_pitches=24,
            time_sizes=(8,),
            note_sizes=(6,),
            batch_size=4,
            segment_bars=2,
            valid_every=3,
            max_steps=10,
            threads=1,
            progress=False,
            **overrides,
        )

    train(config("a"))
    stop = int(np.random.default_rng().integers(1, 10))
    with pytest.MonkeyPatch.context() as patch:
        interrupt_at(stop, SegmentSampler, "batch", patch)
        with pytest.raises(Interrupted, match=f"SIGINT at step {stop}:"):
            train(config("b"))
    train(config("b", resume=True))
    a, b = (torch.load(tmp_path / x / "last.pt", weights_only=True) for x in "ab")
    for name, tensor in a["state_dict"].items():
        assert torch.equal(b["state_dict"][name], tensor), name
    assert [row[2:] for row in a["history"]] == [row[2:] for row in b["history"]]  # train, valid


# -------------------------------------------------------------------------------- fuzzing
INTEGERS = ["-1", "0", "1", "3", "2.5", "nan", "x", "1e400", ""]
FLOATS = ["-1", "0", "0.5", "1", "2", "nan", "inf", "-inf", "x"]
OPTIONS = {
    "agent train": {
        "--steps": INTEGERS,
        "--num-envs": INTEGERS,
        "--batch-size": INTEGERS,
        "--buffer-size": ["-1", "0", "40", "64", "nan"],
        "--learning-starts": INTEGERS,
        "--train-frequency": INTEGERS,
        "--head-size": INTEGERS,
        "--context": INTEGERS,
        "--eval-interval": INTEGERS,
        "--checkpoint-interval": INTEGERS,
        "--gamma": FLOATS,
        "--learning-rate": FLOATS,
        "--eta": FLOATS,
        "--start-e": FLOATS,
        "--temperature": FLOATS,
        "--max-minutes": FLOATS,
        "--c": FLOATS,
        "--length": ["-1", "0", "1", "8", "x"],
        "--seed": ["-1", "0", "5", "x", "99999999999"],
        "--rules": ["key", "key=nan", "key=2", "nope", "jaques2017", ""],
        "--primer": ["", "random_note", "missing.mid"],
        "--key": ["C major", "H major", "A minor"],
        "--device": ["cpu", "cuda", "x"],
        "--algo": ["rltuner-q", "rltuner-g", "sb3-ppo", "sb3-dqn", "other"],
        "--hyperparameters": ["{}", '{"gama": 1}', "[1]", "x", '{"batch_size": 0}'],
    },
    "prior train": {
        "--max-steps": INTEGERS,
        "--batch-size": INTEGERS,
        "--time-sizes": ["-1", "0", "4", "x"],
        "--note-sizes": ["-1", "0", "4", "x"],
        "--dropout": FLOATS,
        "--learning-rate": FLOATS,
        "--grad-clip": FLOATS,
        "--segment-bars": INTEGERS,
        "--valid-every": INTEGERS,
        "--max-transpose": INTEGERS,
        "--lowest-pitch": ["-1", "0", "55", "127", "x"],
        "--num-pitches": ["-1", "0", "24", "200"],
        "--seed": ["-1", "0", "x"],
        "--max-minutes": FLOATS,
        "--device": ["cpu", "cuda", "x"],
        "--data": ["JSB", "no-such-data", "jsb:missing.json"],
    },
    "agent compose": {
        "--agent": ["random", "prior", "PRIOR", "RUN", "nowhere", "PLAIN"],
        "--n": INTEGERS,
        "--length": INTEGERS,
        "--seed": INTEGERS,
        "--out": ["out", "PLAIN"],
    },
}
MAKE_OPTIONS = {
    "length": st.sampled_from([-1, 0, 1, 4, 2.5, math.nan, "x", True]),
    "c": st.sampled_from([-1, 0, 0.5, math.nan, math.inf, "x"]),
    "key": st.sampled_from(["C major", "H major", "", 3]),
    "rules": st.sampled_from(["jaques2017", "key", {"key": math.nan}, {"key": "x"}, "nope"]),
    "primer": st.sampled_from([None, "random_note", [14, 40], "missing.mid", 7]),
    "render_mode": st.sampled_from([None, "ansi", "human", "rgb_array", "video"]),
    "device": st.sampled_from(["cpu", "cuda", "x", 3]),
    "history": st.sampled_from([None, -1, 0, 2, "x"]),
}
FUZZ_EXAMPLES = int(os.environ.get("MUSICGYM_FUZZ_EXAMPLES", "25"))


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(OPTIONS)))
    options = OPTIONS[command]
    chosen = draw(st.lists(st.sampled_from(sorted(options)), max_size=5, unique=True))
    words = command.split()
    if command == "agent train":
        words += ["--out", "run", "--no-progress", "--algo", "rltuner-q", "--steps", "8"]
        words += ["--prior", "PRIOR", "--num-envs", "2", "--eval-interval", "8"]
    elif command == "prior train":
        words += ["--data", "JSB", "--run-dir", "prior", "--max-steps", "2", "--no-progress"]
        words += ["--resolution", "1", "--lowest-pitch", "55", "--num-pitches", "24"]
        words += ["--time-sizes", "4", "--note-sizes", "4", "--segment-bars", "2"]
    else:
        words += ["--out", "out", "--n", "2"]
    for option in chosen:  # the later of two values counts
        words += [option, draw(st.sampled_from(options[option]))]
    if command != "agent compose":
        words += draw(st.lists(st.sampled_from(["--resume", "--overwrite"]), unique=True))
    if "--algo" in chosen and words[words.index("--algo", 3) + 1].startswith("sb3"):
        words = [w for w in words if w not in ("--num-envs", "2")] + ["--hyperparameters", "{}"]
    return words


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=FUZZ_EXAMPLES <= 25,
)
@given(words=command_lines())
def test_fuzzed_command_lines_fail_in_one_line_with_exit_2(cli, files, tmp_path_factory, words):
    folder = tmp_path_factory.mktemp("fuzz")
    places = {
        "PRIOR": str(files / "tiny.pt"),
        "JSB": f"jsb:{files / 'jsb.json'}",
        "PLAIN": str(files / "plain.txt"),
        "RUN": str(folder / "run"),
    }
    words = [places.get(word, word) for word in words]
    result = cli.run(words, folder)
    if "MUSICGYM_FUZZ_LOG" in os.environ:  # for benchmarks/RESULTS.md: how the calls ended
        with open(os.environ["MUSICGYM_FUZZ_LOG"], "a") as log:
            log.write(json.dumps({"words": words[:2], "code": result.code}) + "\n")
    assert "Traceback" not in result.stderr, (words, result.stderr)
    assert result.code in (0, 2), (words, result.code, result.stderr)
    if result.code == 2:
        assert len(result.errors) == 1, (words, result.stderr)


@pytest.mark.filterwarnings("ignore:.*render_mode")  # gymnasium's own note on a bad mode
@settings(max_examples=max(FUZZ_EXAMPLES, 25), deadline=None, derandomize=FUZZ_EXAMPLES <= 25)
@given(kwargs=st.fixed_dictionaries({}, optional=MAKE_OPTIONS))
def test_fuzzed_make_keywords_fail_in_one_line(kwargs):
    import gymnasium as gym

    from musicgym.errors import MusicgymError

    kwargs = {"prior": None, **kwargs}
    try:
        env = gym.make("MusicComposition-v0", **kwargs)
        env.reset(seed=0)
        env.step(1)
    except MusicgymError as error:
        assert len(str(error).splitlines()) == 1, str(error)
