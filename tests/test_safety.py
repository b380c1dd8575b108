"""Run folders and result files from elsewhere are data, not code (issue 24): a crafted SB3 model
runs nothing through any command, names read from files stay inside their folder, and a piece
too long to render is one line."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import pytest

from musicgym.cli import main


class Payload:
    """Unpickling it creates the file ``marker``: what a crafted run folder would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def crafted_sb3_folder(folder: Path, marker: Path) -> Path:
    """A real DQN run folder (agent.json, model.zip) whose model.zip's pickled ``data`` entry
    carries a payload that creates ``marker`` when unpickled."""
    from stable_baselines3 import DQN

    from musicgym.agents.baselines import SB3Config, _make_model
    from musicgym.agents.common import write_agent_info

    config = SB3Config(algo="dqn", hyperparameters=json.dumps({"buffer_size": 64}))
    env = gym.make("MusicComposition-v0", prior=None)
    model = _make_model(config, env, None)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.zip")
    with zipfile.ZipFile(folder / "model.zip") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    serialized = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    data["policy_class"] = {":type:": "<class 'type'>", ":serialized:": serialized}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(folder / "model.zip", "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    write_agent_info(folder, "sb3-dqn", env=config.env_config(), model="model.zip",
                     config=asdict(config), trained_steps=0)  # fmt: skip
    assert DQN is not None
    return folder


def test_sb3s_own_load_would_run_the_payload(tmp_path):
    """The crafted folder is a real threat: SB3's ``load`` runs its payload."""
    from stable_baselines3 import DQN

    marker = tmp_path / "pwned-by-sb3"
    folder = crafted_sb3_folder(tmp_path / "run", marker)
    with pytest.raises(Exception):  # noqa: B017  (what breaks after the payload ran)
        DQN.load(folder / "model.zip")
    assert marker.exists()


def test_no_command_runs_code_from_a_crafted_sb3_folder(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = crafted_sb3_folder(tmp_path / "run", marker)
    out = tmp_path / "composed"
    assert main(["agent", "compose", "--agent", str(folder), "--n", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("*.mid"))) == 2
    assert main(["gallery", str(folder)]) == 0
    assert not marker.exists()


def test_names_read_from_files_stay_inside_their_folder(tmp_path):
    from musicgym.errors import CheckpointError
    from musicgym.fileio import file_in

    assert file_in(tmp_path, "model.zip") == tmp_path / "model.zip"
    for name in ("../outside", "/etc/passwd", "a/b.zip", "..", "", 5, None):
        with pytest.raises(CheckpointError, match="not a plain name inside"):
            file_in(tmp_path, name)
    (tmp_path.parent / "victim.zip").write_text("x")
    (tmp_path / "link.zip").symlink_to(tmp_path.parent / "victim.zip")
    with pytest.raises(CheckpointError, match="not a plain name inside"):
        file_in(tmp_path, "link.zip")


def test_a_sb3_folder_naming_a_model_outside_it_is_one_line(tmp_path, capsys):
    folder = crafted_sb3_folder(tmp_path / "run", tmp_path / "marker")
    info = json.loads((folder / "agent.json").read_text())
    (folder / "agent.json").write_text(json.dumps({**info, "model": "../../model.zip"}))
    assert main(["agent", "compose", "--agent", str(folder), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "not a plain name inside" in error and "Traceback" not in error


def test_a_midi_file_of_a_million_seconds_is_refused_in_one_line(tmp_path, capsys):
    import mido

    midi = mido.MidiFile()
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.Message("note_on", note=60, velocity=80, time=0))
    track.append(mido.Message("note_off", note=60, time=480))
    track.append(mido.MetaMessage("end_of_track", time=10**6 * 2 * 480))  # 10^6 s at 120 bpm
    path = tmp_path / "long.mid"
    midi.save(path)
    assert path.stat().st_size < 200
    from musicgym.errors import AudioError
    from musicgym.music.audio import render_midi

    with pytest.raises(AudioError, match="longer than the 3600 s"):
        render_midi(path)
    capsys.readouterr()
    assert main(["midi", "render", str(path), "--wav", str(tmp_path / "long.wav")]) == 2
    error = capsys.readouterr().err.strip()
    assert "longer than the 3600 s" in error and "\n" not in error
    assert not (tmp_path / "long.wav").exists()


def test_sb3_resume_point_of_the_pickled_layout_needs_trust_folder(tmp_path):
    """A resume point whose state lacks SB3's counters (an older musicgym's, whose model only
    the pickled data holds) is refused in one line that names --trust-folder."""
    import torch

    from musicgym.agents.baselines import SB3Config, train
    from musicgym.errors import RunFolderError
    from tests.test_agents import SB3_SMALL, tiny_prior

    small = {"num_envs": 2, "eval_interval": 10**6, "checkpoint_interval": 64}
    config = SB3Config(algo="dqn", steps=64, hyperparameters=json.dumps(SB3_SMALL["dqn"]), **small)
    prior = tiny_prior()
    train(config, tmp_path, prior=prior, progress=False)
    (state,) = (tmp_path / "checkpoints").glob("state_*_steps.pt")
    saved = torch.load(state, weights_only=True)
    del saved["model"]  # as an older musicgym wrote it
    torch.save(saved, state)
    manifest = next((tmp_path / "checkpoints").glob("manifest_*_steps.json"))
    files = json.loads(manifest.read_text())
    import hashlib

    files["files"]["state"][1] = hashlib.sha256(state.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(files))
    longer = SB3Config(**{**asdict(config), "steps": 96})
    with pytest.raises(RunFolderError, match="--resume --trust-folder"):
        train(longer, tmp_path, resume=True, prior=prior, progress=False)
    trusted = SB3Config(**{**asdict(longer), "trust_folder": True})
    model = train(trusted, tmp_path, resume=True, prior=prior, progress=False)
    assert model.num_timesteps >= 96


def payload_into(zip_path: Path, marker: Path) -> None:
    """Replace the pickled ``data`` entry's policy class of an SB3 zip by the payload."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    serialized = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    data["policy_class"] = {":type:": "<class 'type'>", ":serialized:": serialized}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)


def test_no_code_runs_from_a_crafted_resume_point_or_a_bench_load(tmp_path, monkeypatch):
    import hashlib

    from musicgym.agents.baselines import SB3Config, train
    from musicgym.benchmarks import agents_bench
    from tests.test_agents import SB3_SMALL, tiny_prior

    marker = tmp_path / "pwned"
    run = tmp_path / "bench" / "runs" / "sb3-dqn-seed0"
    small = {"num_envs": 2, "eval_interval": 10**6, "checkpoint_interval": 64}
    config = SB3Config(algo="dqn", steps=64, hyperparameters=json.dumps(SB3_SMALL["dqn"]), **small)
    prior = tiny_prior()
    train(config, run, prior=prior, progress=False)
    payload_into(run / "model.zip", marker)
    (model,) = (run / "checkpoints").glob("model_*_steps.zip")
    payload_into(model, marker)
    manifest = next((run / "checkpoints").glob("manifest_*_steps.json"))
    files = json.loads(manifest.read_text())
    files["files"]["model"][1] = hashlib.sha256(model.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(files))
    longer = SB3Config(**{**asdict(config), "steps": 96})
    train(longer, run, resume=True, prior=prior, progress=False)
    payload_into(run / "model.zip", marker)  # the resumed run wrote a clean one
    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: None)
    bench = agents_bench.AgentsBenchConfig(
        agents=("sb3-dqn",), pieces=4, out=str(tmp_path / "bench"), load=True
    )
    report = agents_bench.run(bench)
    assert report["runs"] == {"sb3-dqn": 1}
    assert not marker.exists()
