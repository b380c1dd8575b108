"""Prior benchmark: training throughput beside the hardware limit, and the JSB likelihood table.

1. **Training throughput**: frames/s of full training steps (forward, backward, gradient
   clipping, Adam) of a ``BiaxialLSTM`` of the default config on batches of 10 segments of 128
   steps, with ``torch.set_num_threads(threads)``. The **hardware limit** is the float32 512 x 512
   matrix-multiply FLOP/s measured in the same run divided by the training FLOPs per frame,
   3 x ``BiaxialConfig.flops_per_frame()`` (forward plus a backward of twice its cost).
2. **Incremental scoring** (what the environment calls): candidate frames/s of ``score_frames``
   on 64 streams x 38 candidates.
3. **Likelihood**: the average log-likelihood per time step of ``jsb_quarter.pt`` on the JSB test
   split (play bits; every step weighted equally) beside the published table of ``biaxial.md``.

    musicgym bench prior                # or: python -m musicgym.benchmarks.prior_bench
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from musicgym.benchmarks.env_bench import matmul_flops_per_second
from musicgym.errors import CheckpointError
from musicgym.prior import checkpoint_path
from musicgym.priors.model import BiaxialConfig, BiaxialLSTM

PUBLISHED_JSB = [
    ("random", -61.00),
    ("RNN-RBM (Boulanger-Lewandowski 2012)", -7.27),
    ("RNN-NADE, best (Boulanger-Lewandowski 2012)", -5.19),
]


def random_note_states(batch: int, steps: int, pitches: int, density: float = 0.08) -> torch.Tensor:
    """``(B, T, N, 2)`` uint8 with about 4 of 48 notes sounding, as in a chorale (the cost does
    not depend on the values)."""
    play = (torch.rand(batch, steps, pitches) < density).to(torch.uint8)
    return torch.stack([play, play & (torch.rand(batch, steps, pitches) < 0.5)], -1)


def training_frames_per_second(
    config: BiaxialConfig, batch: int = 10, steps: int = 128, repeats: int = 3
) -> float:
    """Best frames/s over ``repeats`` training steps (after one warm-up step)."""
    model = BiaxialLSTM(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    segments = random_note_states(batch, steps, config.num_pitches)
    best = 0.0
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss = -model.log_likelihood(segments).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if i:
            best = max(best, batch * steps / (time.perf_counter() - start))
    return best


@torch.no_grad()
def scored_frames_per_second(
    config: BiaxialConfig, streams: int = 64, candidates: int = 38, repeats: int = 5
) -> float:
    """Best candidate frames/s of one ``score_frames`` call plus one ``advance``."""
    model = BiaxialLSTM(config).eval()
    state = model.initial_state(streams)
    frames = random_note_states(streams, candidates, config.num_pitches)  # (B, C, N, 2)
    best = 0.0
    for i in range(repeats + 1):
        start = time.perf_counter()
        model.score_frames(state, frames)
        state = model.advance(state, frames[:, 0])
        if i:
            best = max(best, streams * candidates / (time.perf_counter() - start))
    return best


def jsb_test_log_likelihood(checkpoint: str, data: Path) -> float:
    from musicgym.prior import resolve_prior
    from musicgym.priors.data import load_dataset
    from musicgym.priors.train import evaluate_log_likelihood

    model = resolve_prior(checkpoint)
    dataset = load_dataset(
        f"jsb:{data}", lowest_pitch=model.lowest_pitch, num_pitches=model.num_pitches
    )
    return evaluate_log_likelihood(model, dataset.test, play_only=True)


def run(
    threads: int = 1,
    checkpoint: str = "jsb_quarter",
    data: str | Path | None = None,
    repeats: int = 3,
    curve_png: str | Path = "runs/bench-prior/learning_curve.png",
) -> dict[str, float]:
    """Run the benchmark, print Markdown tables, draw the checkpoint's learning curve, and return
    the figures. ``data``: the JSB Chorales quarter-note JSON (not shipped), for the likelihood
    row; without it the row is left out, saying why."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = BiaxialConfig()
    flops = 3 * config.flops_per_frame()
    matmul = matmul_flops_per_second(512)
    frames = training_frames_per_second(config, repeats=repeats)
    matmul_after = matmul_flops_per_second(512)
    limit = max(matmul, matmul_after) / flops
    scored = scored_frames_per_second(config)
    print(
        f"default config: {config.num_pitches} pitches, time {config.time_sizes}, note "
        f"{config.note_sizes}; {flops / 1e6:.1f} MFLOP per training frame; "
        f"torch {torch.__version__}, {threads} thread(s)\n"
    )
    print("| row | value |\n| --- | ---: |")
    print(f"| matmul 512x512 GFLOP/s (best before/after) | {max(matmul, matmul_after) / 1e9:.1f} |")
    print(f"| hardware limit, training frames/s | {limit:,.0f} |")
    print(f"| measured training frames/s | {frames:,.0f} |")
    print(f"| fraction of the limit | {frames / limit:.0%} |")
    print(f"| score_frames candidate frames/s (64 x 38) | {scored:,.0f} |")
    result = {
        "matmul_flops_per_s": max(matmul, matmul_after),
        "limit_frames_per_s": limit,
        "training_frames_per_s": frames,
        "fraction_of_limit": frames / limit,
        "score_frames_per_s": scored,
    }
    try:
        path = checkpoint_path(checkpoint)
    except CheckpointError:
        path = Path(checkpoint)
    if data is not None and Path(data).is_file() and path.is_file():
        ll = jsb_test_log_likelihood(str(path), Path(data))
        result["jsb_test_log_likelihood_per_step"] = ll
        rows = [*PUBLISHED_JSB, (f"**this BALSTM, `{path.name}`**", ll)]
        print("\n| model | JSB Chorales test, log-likelihood per step |\n| --- | ---: |")
        for name, value in sorted(rows, key=lambda row: row[1]):
            print(f"| {name} | {value:.2f} |")
    else:
        missing = path if data is not None and Path(data).is_file() else data
        print(
            f"\n(no likelihood row: {missing or 'no --data'}; pass --data PATH to "
            "jsb-chorales-quarter.json, from C. Z. Anna Huang's JSB-Chorales-dataset)"
        )
    card = path.with_suffix(".json")
    if card.is_file():
        plot_training_curve(card, Path(curve_png))
        print(f"\nlearning curve of {path.name}: {curve_png}")
    return result


def plot_training_curve(card: Path, png: Path) -> None:
    """Train and valid log-likelihood per step against training minutes, from a model card,
    beside the published JSB figures."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = json.loads(card.read_text())["curve"]
    minutes = [point["minutes"] for point in curve]
    figure, ax = plt.subplots(figsize=(7, 4))
    ax.plot(minutes, [point["train"] for point in curve], label="train", color="tab:blue")
    ax.plot(minutes, [point["valid"] for point in curve], label="valid", color="tab:orange")
    for (name, value), style in zip(PUBLISHED_JSB[1:], ("--", ":")):
        ax.axhline(value, color="gray", linestyle=style, label=f"{name} (test)")
    ax.set_xlabel("training minutes (one CPU thread)")
    ax.set_ylabel("log-likelihood per time step")
    ax.set_ylim(-12, -4)
    ax.set_title(card.stem)
    ax.legend(fontsize=8)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    run()
