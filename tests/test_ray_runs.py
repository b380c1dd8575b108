"""Benchmark runs on Ray (``benchmarks/ray_runs.py``, ``bench agents --ray``): the table of a local
2-CPU Ray equals that of ``--jobs 2``; failed jobs are reported and the others kept; files travel
to and from nodes that do not see ``--out``; bad addresses and a missing Ray are one line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from musicgym.benchmarks import agents_bench
from musicgym.benchmarks.agents_bench import AgentsBenchConfig
from musicgym.benchmarks.ray_runs import (
    RayJob,
    RunFailure,
    _run_job,
    pack_folder,
    run_jobs,
    unpack_folder,
)
from musicgym.cli import main

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (the ray extra)")


@pytest.fixture
def fake_test_melodies(monkeypatch) -> None:
    """Test melodies of a stand-in dataset (the prior's own data would convert for minutes)."""
    windows = np.random.default_rng(5).choice([14, 16, 18, 19, 21, 1, 0], (40, 32)).tolist()
    monkeypatch.setattr(agents_bench, "reference_data", lambda *_: ("fake", windows))


@needs_ray
@pytest.mark.slow
def test_bench_agents_on_a_local_ray_gives_the_table_of_two_jobs(tmp_path, fake_test_melodies):
    settings = {
        "agents": ("prior", "random", "rules-only"),
        "steps": 100,
        "pieces": 8,
        "jobs": 2,
        "progress": False,
    }
    local = agents_bench.run(AgentsBenchConfig(**settings, out=str(tmp_path / "jobs")))
    on_ray = agents_bench.run(AgentsBenchConfig(**settings, out=str(tmp_path / "ray"), ray=""))
    assert set(on_ray["table"]) == {"test melodies", "prior", "random", "rules-only"}
    for part in ("table", "results"):  # as text: NaN (no leap to resolve) equals NaN there
        assert json.dumps(on_ray[part], sort_keys=True) == json.dumps(local[part], sort_keys=True)
    run = tmp_path / "ray" / "runs" / "rules-only-seed0"
    assert {"agent.json", "agent.pt", "measures.json"} <= {p.name for p in run.iterdir()}
    assert not list((tmp_path / "ray").glob(".musicgym-ray-*"))  # the marker is gone
    assert (tmp_path / "ray" / "results.md").read_text() == (
        tmp_path / "jobs" / "results.md"
    ).read_text()
    trained = (run / "agent.pt").stat().st_mtime_ns
    reused = agents_bench.run(
        AgentsBenchConfig(**settings, out=str(tmp_path / "ray"), ray="", load=True)
    )
    assert json.dumps(reused["table"], sort_keys=True) == json.dumps(local["table"], sort_keys=True)
    assert (run / "agent.pt").stat().st_mtime_ns == trained  # --load trained nothing again


@needs_ray
def test_a_failed_job_and_a_dead_worker_are_reported_and_the_others_kept(tmp_path, capsys):
    jobs = [
        RayJob("raises (seed 0)", int, ("not a number",), "runs/a"),
        RayJob("dies (seed 0)", os._exit, (3,), "runs/b"),
        RayJob("works (seed 0)", len, ("four",), "runs/c"),
    ]
    raised, died, worked = run_jobs(jobs, tmp_path, local_cpus=2)
    assert isinstance(raised, RunFailure) and raised.error.startswith("ValueError: invalid")
    assert isinstance(died, RunFailure) and died.error.startswith("WorkerCrashedError")
    assert worked == 4
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("raises (seed 0): failed (ValueError: invalid literal") for line in lines
    )
    assert any(line.startswith("dies (seed 0): failed (WorkerCrashedError") for line in lines)


def _append_line(out: str, folder: str, line: str) -> str:
    """A job that goes on from the files of its folder: appends a line, returns them all."""
    log = Path(out) / folder / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(line + "\n")
    return log.read_text()


def test_a_node_that_does_not_see_out_gets_the_folder_and_sends_it_back(tmp_path, monkeypatch):
    driver = tmp_path / "driver"
    (driver / "bench" / "runs" / "x").mkdir(parents=True)
    (driver / "bench" / "runs" / "x" / "log.txt").write_text("trained before\n")
    monkeypatch.chdir(driver)
    shipped = pack_folder(Path("bench") / "runs" / "x")
    result, archive = _run_job(
        _append_line,
        ("bench", "runs/x", "resumed on the node"),
        "bench",  # relative, as --out usually is: the node works in a temporary folder
        "runs/x",
        ".musicgym-ray-not-there",
        str(tmp_path / "no-such-working-folder"),
        shipped,
    )
    assert result == "trained before\nresumed on the node\n"
    assert archive is not None
    assert (driver / "bench" / "runs" / "x" / "log.txt").read_text() == "trained before\n"
    unpack_folder(archive, driver / "bench" / "runs" / "x")
    assert (driver / "bench" / "runs" / "x" / "log.txt").read_text() == result


def test_a_node_that_sees_out_writes_in_place(tmp_path, monkeypatch):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / ".musicgym-ray-token").write_text("")
    result, archive = _run_job(
        _append_line,
        (str(tmp_path / "bench"), "runs/y", "in place"),
        str(tmp_path / "bench"),
        "runs/y",
        ".musicgym-ray-token",
        str(tmp_path),
        None,
    )
    assert archive is None and result == "in place\n"
    assert (tmp_path / "bench" / "runs" / "y" / "log.txt").read_text() == "in place\n"


def _bench(*options: str) -> list[str]:
    return ["bench", "agents", "--agents", "random", "--melodies", "4", *options]


@pytest.mark.parametrize(
    "address, message",
    [
        ("127.0.0.1:1", "--ray 127.0.0.1:1: no Ray cluster answers there"),
        ("no-port-here", "--ray 'no-port-here': expected HOST:PORT, ray://HOST:PORT or auto"),
    ],
)
@needs_ray
def test_a_bad_address_is_one_line(tmp_path, capsys, fake_test_melodies, address, message):
    assert main(_bench("--ray", address, "--out", str(tmp_path))) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_without_ray_the_bench_says_which_extra_in_one_line(
    tmp_path, capsys, monkeypatch, fake_test_melodies
):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is absent
    assert main(_bench("--ray", "--out", str(tmp_path))) == 2
    err = capsys.readouterr().err.strip()
    assert "running on Ray needs ray" in err and 'pip install -e ".[ray]"' in err
    assert len(err.splitlines()) == 1


@needs_ray
def test_quick_sets_the_small_version(monkeypatch):
    seen = {}
    monkeypatch.setattr(agents_bench, "run", lambda config: seen.setdefault("config", config))
    assert main(["bench", "agents", "--quick", "--ray", "--out", "runs/check-br"]) == 0
    config = seen["config"]
    assert (config.steps, config.pieces, config.jobs, config.ray) == (1000, 100, 2, "")
    assert config.agents == agents_bench.QUICK["agents"] and config.out == "runs/check-br"
