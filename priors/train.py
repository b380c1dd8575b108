"""Training of a prior (``--model``: the Bi-axial LSTM or the Note RNN,
``musicgym.priors.registry``), readable top to bottom like CleanRL's scripts.

``train(TrainConfig(...))`` (or ``musicgym prior train``) draws batches of bar-aligned segments from
the train split, transposes each by a random shift that keeps its notes on the pitch axis,
maximises the per-step log-likelihood with Adam or AdaDelta, validates every ``valid_every`` steps
and keeps the best checkpoint on valid. The run directory holds ``last.pt`` (for ``--resume``:
weights, optimizer, step, RNG states), ``best.pt`` and TensorBoard scalars. With ``--out`` the best
checkpoint is also copied there when training ends, with a model card (``.json``) beside it.

A run directory that holds a run is refused unless ``--resume`` (which goes on exactly, and
refuses other settings than ``--max-steps``, ``--max-minutes``, ``--threads``, ``--device``,
``--progress`` and ``--out``) or ``--overwrite``; it is locked while training
(``musicgym.runs``). SIGINT / SIGTERM write ``last.pt`` at the current step and stop.

Several processes (``--ddp N``, or ``torchrun ... -m musicgym.priors.train``) train with torch DDP
through the hooks of ``priors/replicas.py`` (``replicas()``: share the batch, the log-likelihood
in DDP, agree to stop, rank 0 writes); in one process every hook is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from musicgym.checks import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    THREADS,
    check_device,
    check_number,
    check_numbers,
)
from musicgym.errors import CheckpointError, RunFolderError
from musicgym.fileio import save_checkpoint_file, write_text
from musicgym.music.notestate import NoteState
from musicgym.priors.registry import (
    MODELS,
    build_model,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from musicgym.priors.replicas import process_group, replicas
from musicgym.runs import (
    StopSignals,
    check_output_folder,
    check_resume_settings,
    claim_run_folder,
)

RUN_FILES = ("last.pt", "best.pt", "events.out.tfevents.*")
"""What ``prior train`` writes into its run directory (glob patterns)."""
RESUMABLE = ("max_steps", "max_minutes", "threads", "device", "progress", "out")
"""The settings ``--resume`` may change; the others decide the run and must stay the run's."""


@dataclass
class TrainConfig:
    """Hyperparameters of ``musicgym prior train``."""

    model: str = "biaxial-lstm"
    """Which prior to train: biaxial-lstm (Johnson's Bi-axial LSTM) or note-rnn (Jaques et al.'s
    Note RNN over the top voice's melody tokens)."""
    data: str = "bach-chorales"
    """Dataset name (see `musicgym data list`), e.g. bach-chorales or jsb:PATH."""
    run_dir: str = "runs/prior"
    """Directory of last.pt, best.pt and the TensorBoard events."""
    out: str = ""
    """If set, copy the best checkpoint here at the end and write a model card beside it."""
    resolution: int = 4
    """Time steps per quarter note (JSB quarter-note files: 1)."""
    lowest_pitch: int = 36
    """Lowest MIDI pitch of the model's pitch axis."""
    num_pitches: int = 48
    """Size of the pitch axis."""
    key_normalise: bool = False
    """Transpose every tune to C major / A minor by its key signature (music21 corpora); the prior
    is then key-normalised and the environment transposes into C before scoring. Use it with
    --max-transpose 0 and a pitch axis of the melody tokens +-6 (e.g. --lowest-pitch 42
    --num-pitches 48)."""
    time_sizes: tuple[int, ...] = ()
    """Hidden sizes of the LSTM stack along time (default: the model's, biaxial-lstm 128 128,
    note-rnn 100)."""
    note_sizes: tuple[int, ...] = ()
    """Hidden sizes of the Bi-axial LSTM's note-axis stack (default 64 32)."""
    dropout: float = 0.2
    """Dropout between LSTM layers (the original's 0.5 learns too slowly for an hour of CPU)."""
    play_only: bool = False
    """Train on the play bits' likelihood only (forced for data without articulation, e.g. JSB)."""
    optimizer: Literal["adam", "adadelta"] = "adam"
    """Adam, or AdaDelta with the original's rho 0.95, eps 1e-6 (use learning rate 1.0)."""
    learning_rate: float = 3e-3
    """Learning rate (bach16 was trained with 3e-3, jsb_quarter with 2e-3)."""
    grad_clip: float = 5.0
    """Clip the global gradient norm at this value (0: no clipping)."""
    batch_size: int = 10
    """Segments per batch."""
    segment_bars: int = 8
    """Segment length in bars (of beats_per_bar quarter notes); segments start on a bar line."""
    beats_per_bar: int = 4
    """Quarter notes per bar, for segment starts."""
    max_transpose: int = 6
    """Transpose each segment by a random shift in -max_transpose..max_transpose semitones."""
    valid_every: int = 50
    """Validate and write checkpoints every this many steps."""
    max_steps: int = 100_000
    """Stop after this many optimizer steps."""
    max_minutes: float = 0.0
    """Stop after this many minutes of training in all (across resumes); 0: no limit."""
    seed: int = 0
    """Seed of the initial weights, dropout and batch sampling."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""
    threads: int = 0
    """torch.set_num_threads (0: leave torch's default)."""
    resume: bool = False
    """Continue from run_dir/last.pt (same step, optimizer state and RNG) if it exists."""
    overwrite: bool = False
    """Replace the run in run_dir (and the file at --out)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model: unknown {self.model!r}; known: {', '.join(MODELS)}")
        defaults = MODELS[self.model].config_class()
        for name in ("time_sizes", "note_sizes"):  # () is the model's default, if it has one
            setattr(self, name, tuple(getattr(self, name)) or getattr(defaults, name, ()))
        counts = ("resolution", "num_pitches", "batch_size", "segment_bars", "beats_per_bar")
        check_numbers(
            self,
            {
                **{name: POSITIVE_INT for name in (*counts, "valid_every", "max_steps")},
                "lowest_pitch": {**NON_NEGATIVE_INT, "high": 127},
                "dropout": {"low": 0, "below": 1},
                "learning_rate": POSITIVE,
                "grad_clip": NON_NEGATIVE,
                "max_transpose": {**NON_NEGATIVE_INT, "high": 127},
                "max_minutes": NON_NEGATIVE,
                "seed": {**NON_NEGATIVE_INT, "high": 2**63 - 1},
                "threads": THREADS,
            },
        )
        if self.lowest_pitch + self.num_pitches > 128:
            raise ValueError(
                f"num_pitches: {self.lowest_pitch} + {self.num_pitches} goes past MIDI pitch 127"
            )
        for name in ("time_sizes", "note_sizes"):
            for size in getattr(self, name):
                check_number(name, size, **POSITIVE_INT)


class SegmentSampler:
    """Random bar-aligned segments of the train split, randomly transposed.

    A segment starts on a bar line and holds ``segment_steps`` frames; a piece shorter than that
    gives one segment from its start, padded with silence that the mask leaves out. The first frame
    of a segment that does not start the piece is masked too: the model would score it after
    silence, which is not its real context.
    """

    def __init__(
        self,
        pieces: list[NoteState],
        segment_steps: int,
        bar_steps: int,
        max_transpose: int,
        generator: torch.Generator,
    ) -> None:
        self.matrices = [piece.matrix for piece in pieces]
        self.segment_steps = segment_steps
        self.max_transpose = max_transpose
        self.generator = generator
        self.starts = [
            (i, start)
            for i, matrix in enumerate(self.matrices)
            for start in range(0, max(1, len(matrix) - segment_steps + 1), bar_steps)
        ]

    def _randint(self, low: int, high: int) -> int:
        """Uniform in low..high inclusive, from the sampler's generator."""
        return int(torch.randint(low, high + 1, (1,), generator=self.generator))

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Segments ``(B, T, N, 2)`` uint8 and their frame mask ``(B, T)`` float."""
        T = self.segment_steps
        N = self.matrices[0].shape[1]
        segments = np.zeros((batch_size, T, N, 2), np.uint8)
        mask = np.zeros((batch_size, T), np.float32)
        for b in range(batch_size):
            piece, start = self.starts[self._randint(0, len(self.starts) - 1)]
            segment = self.matrices[piece][start : start + T]
            sounding = np.flatnonzero(segment[..., 0].any(axis=0))
            if sounding.size:
                low = max(-self.max_transpose, -int(sounding[0]))
                high = min(self.max_transpose, N - 1 - int(sounding[-1]))
                segment = np.roll(segment, self._randint(low, high), axis=1)
            segments[b, : len(segment)] = segment
            mask[b, : len(segment)] = 1.0
            if start > 0:
                mask[b, 0] = 0.0
        return torch.from_numpy(segments), torch.from_numpy(mask)


@torch.no_grad()
def evaluate_log_likelihood(
    model: nn.Module,
    pieces: list[NoteState],
    play_only: bool = False,
    max_batch_frames: int = 8192,
) -> float:
    """Average log-likelihood per time step over whole pieces, every step weighted equally
    (Boulanger-Lewandowski's protocol). Pieces are scored from their first frame."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(pieces)), key=lambda i: pieces[i].num_steps)
    total, frames = 0.0, 0
    i = 0
    while i < len(order):
        longest = pieces[order[i]].num_steps
        group = [order[i]]
        i += 1
        while i < len(order):
            longest_next = pieces[order[i]].num_steps
            if longest_next * (len(group) + 1) > max_batch_frames:
                break
            group.append(order[i])
            longest = longest_next
            i += 1
        batch = np.zeros((len(group), longest, model.num_pitches, 2), np.uint8)
        mask = np.zeros((len(group), longest), np.float64)
        for b, index in enumerate(group):
            piece = pieces[index].with_range(model.lowest_pitch, model.num_pitches)
            batch[b, : piece.num_steps] = piece.matrix
            mask[b, : piece.num_steps] = 1.0
        ll = model.log_likelihood(torch.from_numpy(batch).to(model.device), play_only)  # (B, T)
        total += float((ll.double().cpu().numpy() * mask).sum())
        frames += int(mask.sum())
    model.train(was_training)
    return total / max(frames, 1)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(model.parameters(), lr=config.learning_rate, rho=0.95, eps=1e-6)
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate)


def machine_description(device: str, threads: int) -> str:
    """CPU model and thread count (or the GPU), for model cards and benchmarks."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {threads} torch thread(s), {os.cpu_count()} logical CPUs"


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a prior; returns a summary (step, minutes, best valid, and test if ``out`` is set).
    SIGINT / SIGTERM write ``last.pt`` and raise :class:`musicgym.errors.Interrupted`."""
    check_device(config.device)
    if config.out:
        out = Path(config.out)
        if out.is_dir():
            raise RunFolderError(f"--out {out}: a folder; give the file to ship the prior to")
        if out.exists() and not (config.resume or config.overwrite):
            raise RunFolderError(
                f"--out {out}: exists; pass --overwrite to replace it, or choose another --out"
            )
        check_output_folder(out.parent, "--out")
    claim = claim_run_folder(
        config.run_dir,
        resume=config.resume,
        overwrite=config.overwrite,
        run_files=RUN_FILES,
        what="--run-dir",
    )
    with (
        claim if replicas().is_writer else contextlib.nullcontext(),  # DDP: rank 0 writes
        StopSignals() as stop,
    ):
        return _train(config, stop)


@dataclass
class Progress:
    """How far a run has come; kept in its checkpoints and restored by ``--resume``."""

    step: int = 0
    best_valid: float = -math.inf
    seconds: float = 0.0
    """Seconds of training (validation included) over all sessions."""
    history: list[list[float]] = field(default_factory=list)
    """``[step, minutes, mean train log-likelihood, valid log-likelihood]`` per validation."""
    window: list[float] = field(default_factory=list)
    """The training batches' log-likelihoods since the last validation."""

    def out_of_budget(self, config: TrainConfig) -> bool:
        return self.step >= config.max_steps or (
            config.max_minutes > 0 and self.seconds >= config.max_minutes * 60
        )


class RunCheckpoints:
    """Writes ``last.pt`` and ``best.pt`` of a run: the model and everything ``--resume`` needs
    (optimizer, progress, random generators)."""

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        data: dict[str, Any],
        play_only: bool,
    ) -> None:
        self.config, self.model, self.optimizer, self.generator = (
            config,
            model,
            optimizer,
            generator,
        )
        self.data, self.play_only = data, play_only
        self.last, self.best = Path(config.run_dir) / "last.pt", Path(config.run_dir) / "best.pt"

    def write(self, path: Path, progress: Progress, valid: float) -> None:
        save_checkpoint(
            path,
            self.model,
            optimizer=self.optimizer,
            step=progress.step,
            best_valid=progress.best_valid,
            train_config=asdict(self.config),
            data=self.data,
            minutes=progress.seconds / 60,
            history=progress.history,
            valid_log_likelihood=valid,
            play_only=self.play_only,
            rng={"torch": torch.get_rng_state(), "data": self.generator.get_state()},
            window=list(progress.window),
        )

    def restore(self, checkpoint: dict[str, Any]) -> Progress:
        """Load ``last.pt``'s state into the model, optimizer and generators; its progress."""
        try:
            self.model.load_state_dict(checkpoint["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (KeyError, ValueError, RuntimeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CheckpointError(f"{self.last}: does not fit this model ({first})") from None
        torch.set_rng_state(checkpoint["rng"]["torch"])
        self.generator.set_state(checkpoint["rng"]["data"])
        print(f"resumed {self.last} at step {checkpoint['step']}", file=sys.stderr)
        return Progress(
            step=checkpoint["step"],
            best_valid=checkpoint["best_valid"],
            seconds=checkpoint["minutes"] * 60,
            history=checkpoint["history"],
            window=list(checkpoint.get("window", [])),
        )


def resumed_checkpoint(config: TrainConfig) -> dict[str, Any]:
    """``last.pt`` of the run to resume (its settings checked against ``config``), or ``{}``."""
    last = Path(config.run_dir) / "last.pt"
    if not (config.resume and last.exists()):
        return {}
    checkpoint = read_checkpoint(last)
    saved = checkpoint.get("train_config", {})
    saved = {k: v for k, v in saved.items() if k not in ("resume", "overwrite")}
    check_resume_settings(config.run_dir, saved, config, RESUMABLE)
    return checkpoint


def training_data(config: TrainConfig) -> tuple[Any, SegmentSampler, torch.Generator]:
    """The dataset, the sampler of training segments, and the sampler's generator (seeded)."""
    from musicgym.priors.data import load_dataset

    dataset = load_dataset(
        config.data,
        resolution=config.resolution,
        lowest_pitch=config.lowest_pitch,
        num_pitches=config.num_pitches,
        seed=config.seed,
        key_normalise=config.key_normalise,
    )
    bar_steps = config.beats_per_bar * dataset.resolution
    generator = torch.Generator().manual_seed(config.seed)
    sampler = SegmentSampler(
        dataset.train, config.segment_bars * bar_steps, bar_steps, config.max_transpose, generator
    )
    return dataset, sampler, generator


def new_model(config: TrainConfig, dataset: Any) -> nn.Module:
    """A fresh model of ``config.model`` on the data's pitch axis and resolution."""
    return build_model(
        config.model,
        lowest_pitch=dataset.lowest_pitch,
        num_pitches=dataset.num_pitches,
        resolution=dataset.resolution,
        key_normalised=dataset.key_normalised,
        time_sizes=config.time_sizes,
        note_sizes=config.note_sizes,
        dropout=config.dropout,
    ).to(config.device)


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    config: TrainConfig,
    play_only: bool,
    log_likelihood: Any = None,
) -> float:
    """One optimizer step on a ``batch`` of segments, their mask and the number of unmasked
    frames in the global batch (all processes'); the mean log-likelihood per frame.
    ``log_likelihood``: ``model.log_likelihood`` (default), or it wrapped in DDP."""
    segments, mask, frames = batch
    ll = (log_likelihood or model.log_likelihood)(segments, play_only)  # (B, T)
    loss = -(ll * mask).sum() / frames
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return -loss.item()


def validate(
    model: nn.Module,
    pieces: list[NoteState],
    progress: Progress,
    checkpoints: RunCheckpoints,
    play_only: bool,
) -> tuple[float, float]:
    """Validate, record it in ``progress``, write ``best.pt`` (if better) and ``last.pt``; the
    mean training log-likelihood since the last validation and the valid one."""
    valid = evaluate_log_likelihood(model, pieces, play_only)
    mean_train = float(np.mean(progress.window))
    progress.history.append([progress.step, round(progress.seconds / 60, 3), mean_train, valid])
    if valid > progress.best_valid:
        progress.best_valid = valid
        checkpoints.write(checkpoints.best, progress, valid)
    progress.window = []
    checkpoints.write(checkpoints.last, progress, valid)
    return mean_train, valid


def _train(config: TrainConfig, stop: StopSignals) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    if config.threads:
        torch.set_num_threads(config.threads)
    checkpoint = resumed_checkpoint(config)
    dataset, sampler, generator = training_data(config)
    play_only = config.play_only or not dataset.has_articulation
    torch.manual_seed(config.seed)
    model = new_model(config, dataset)
    optimizer = make_optimizer(model, config)
    parameters = sum(p.numel() for p in model.parameters())
    check_output_folder(config.run_dir, "--run-dir", 2 * 3 * 4 * parameters)
    checkpoints = RunCheckpoints(config, model, optimizer, generator, dataset.describe(), play_only)
    progress = checkpoints.restore(checkpoint) if checkpoint else Progress()
    replica = replicas()  # DDP hooks (priors/replicas.py); one process: all no-ops
    last = checkpoints.last
    replica.same(progress.step, f"--resume: not every process found {last} (a folder they share?)")
    log_likelihood = replica.log_likelihood(model)  # model.log_likelihood, or it in DDP
    replica.seed(config.seed, progress.step)

    writer = SummaryWriter(config.run_dir) if replica.is_writer else None
    bar = tqdm(
        total=config.max_steps,
        initial=progress.step,
        disable=not (config.progress and replica.is_writer),
        mininterval=10,
        desc=config.model,
        unit="step",
    )
    model.train()
    frames_seen, window_start = 0, time.perf_counter()
    while not replica.any(progress.out_of_budget(config) or stop.requested):
        started = time.perf_counter()
        segments, mask, frames = replica.share(*sampler.batch(config.batch_size))
        batch = (segments.to(config.device), mask.to(config.device), frames)
        progress.window.append(
            training_step(model, optimizer, batch, config, play_only, log_likelihood)
        )
        progress.step += 1
        progress.seconds += time.perf_counter() - started
        frames_seen += int(mask.sum())
        bar.update(1)

        if replica.is_writer and (
            progress.step % config.valid_every == 0 or progress.out_of_budget(config)
        ):
            frames_per_s = frames_seen / (time.perf_counter() - window_start)
            mean_train, valid = validate(model, dataset.valid, progress, checkpoints, play_only)
            writer.add_scalar("losses/train_log_likelihood", mean_train, progress.step)
            writer.add_scalar("charts/valid_log_likelihood", valid, progress.step)
            writer.add_scalar("charts/frames_per_s", frames_per_s, progress.step)
            bar.set_postfix(
                train=f"{mean_train:.3f}", valid=f"{valid:.3f}", fps=f"{frames_per_s:.0f}"
            )
            frames_seen, window_start = 0, time.perf_counter()
    bar.close()
    if writer is not None:
        writer.close()
    if replica.any(stop.requested) and not progress.out_of_budget(config):  # any process's
        if replica.is_writer:
            valid = progress.history[-1][3] if progress.history else -math.inf
            checkpoints.write(checkpoints.last, progress, valid)
        raise stop.stopped_short(progress.step, checkpoints.last)

    summary: dict[str, Any] = {
        "step": progress.step,
        "minutes": round(progress.seconds / 60, 2),
        "best_valid_log_likelihood_per_step": progress.best_valid,
        "play_only": play_only,
    }
    if config.out and checkpoints.best.exists() and replica.is_writer:
        summary.update(ship_checkpoint(checkpoints.best, Path(config.out), dataset, config))
    return summary


def train_command(config: TrainConfig) -> str:
    """The ``musicgym prior train`` command line of a config (its non-default options)."""
    words = ["musicgym", "prior", "train"]
    for f in fields(TrainConfig):
        value, default = getattr(config, f.name), f.default
        if value == default or f.name in ("resume", "overwrite", "progress"):
            continue
        option = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(option if value else "--no-" + option[2:])
        elif isinstance(value, tuple):
            words += [option, *map(str, value)]
        else:
            words += [option, str(value)]
    return " ".join(words)


def ship_checkpoint(
    best_path: Path, out: Path, dataset: Any, config: TrainConfig
) -> dict[str, Any]:
    """Copy the best checkpoint to ``out`` without the optimizer and RNG state, and write the
    model card ``out`` with suffix ``.json``: the command, data, steps, minutes, machine, and the
    valid and test log-likelihoods per step (test is measured here, never used to choose)."""
    checkpoint = read_checkpoint(best_path)
    last_path = best_path.with_name("last.pt")
    last = read_checkpoint(last_path) if last_path.exists() else checkpoint
    model = model_from_checkpoint(checkpoint, best_path).to(config.device)
    play_only = checkpoint["play_only"]
    test = evaluate_log_likelihood(model, dataset.test, play_only)
    shipped = {k: v for k, v in checkpoint.items() if k not in ("optimizer", "rng", "window")}
    shipped["test_log_likelihood"] = test
    save_checkpoint_file(shipped, out)
    card = {
        "checkpoint": out.name,
        "model": checkpoint["model"],
        "command": train_command(config),
        "data": checkpoint["data"],
        "model_config": checkpoint["config"],
        "parameters": sum(v.numel() for v in checkpoint["state_dict"].values()),
        "train_config": checkpoint["train_config"],
        "step": checkpoint["step"],
        "minutes": round(checkpoint["minutes"], 2),
        "total_steps": last["step"],
        "total_minutes": round(last["minutes"], 2),
        "machine": machine_description(config.device, torch.get_num_threads()),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "likelihood": "play bits only" if play_only else "play and articulate",
        "valid_log_likelihood_per_step": checkpoint["valid_log_likelihood"],
        "test_log_likelihood_per_step": test,
        "curve": [
            {"step": s, "minutes": m, "train": round(tr, 4), "valid": round(v, 4)}
            for s, m, tr, v in last["history"]
        ],
    }
    write_text(out.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    return {"test_log_likelihood_per_step": test, "out": str(out)}


def main(argv: list[str] | None = None) -> int:
    """``python -m musicgym.priors.train``: the same options as ``musicgym prior train``."""
    import argparse

    from musicgym.arguments import add_dataclass_arguments, dataclass_from_args

    parser = argparse.ArgumentParser(prog="python -m musicgym.priors.train", description=__doc__)
    add_dataclass_arguments(parser, TrainConfig)
    config = dataclass_from_args(TrainConfig, parser.parse_args(argv))
    with process_group(config.device) as replica:  # torchrun starts it in every process
        summary = train(config)
    if replica.is_writer:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
