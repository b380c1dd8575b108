"""Command-line groups of this package (``bench``, ``demo`` and ``gallery``), added to ``musicgym``
through the ``musicgym.cli`` entry point.

Each benchmark is a ``musicgym bench NAME`` subcommand. To add one, write a function that takes
the ``bench`` group's subparsers, adds a parser and sets its ``func``, and decorate it with
:func:`bench_command`; import the benchmark module inside ``func`` so that ``musicgym --help`` stays
fast.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable

from musicgym.arguments import percentile, thread_count

BenchAdder = Callable[[argparse._SubParsersAction], None]
BENCH_COMMANDS: list[BenchAdder] = []


def bench_command(add: BenchAdder) -> BenchAdder:
    """Register a function that adds one ``musicgym bench`` subcommand."""
    BENCH_COMMANDS.append(add)
    return add


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's command groups to the ``musicgym`` command: ``bench``, ``demo`` and
    ``gallery``."""
    add_bench_group(subparsers)
    add_demo_command(subparsers)
    add_gallery_command(subparsers)


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    from musicgym.arguments import add_dataclass_arguments
    from musicgym.benchmarks.demo import DemoConfig

    demo = subparsers.add_parser(
        "demo",
        help="sample the shipped prior, tune it briefly with the RL Tuner, compare (a few minutes)",
    )
    add_dataclass_arguments(demo, DemoConfig)
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from musicgym.arguments import dataclass_from_args
    from musicgym.benchmarks.demo import DemoConfig, run

    run(dataclass_from_args(DemoConfig, args))
    return 0


def add_gallery_command(subparsers: argparse._SubParsersAction) -> None:
    from musicgym.arguments import add_audio_arguments

    gallery = subparsers.add_parser(
        "gallery",
        help="write DIR/index.html: hear and see what the agents of a demo, bench or agent "
        "folder composed",
        description="Write DIR/index.html for a folder of `musicgym demo`, `bench agents`, "
        "`agent compose` or `agent train`: each agent's statistics beside the published columns, "
        "and per piece a piano roll, an audio player and its MIDI file. WAV and PNG files "
        "missing beside the MIDI files are rendered first. The page is static: open it from "
        "disk.",
    )
    gallery.add_argument("folder", help="a demo, bench, compose or agent run folder")
    gallery.add_argument("--title", help="the page's title (default: the folder's name)")
    add_audio_arguments(gallery)
    gallery.set_defaults(func=_run_gallery)


def _run_gallery(args: argparse.Namespace) -> int:
    from musicgym.arguments import audio_options
    from musicgym.benchmarks.gallery import write_gallery

    print(write_gallery(args.folder, title=args.title, **audio_options(args)))
    return 0


def add_bench_group(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add the ``bench`` group with every registered benchmark; returns its subparsers."""
    bench = subparsers.add_parser("bench", help="run the benchmarks (results in RESULTS.md)")
    benchmarks = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for add in BENCH_COMMANDS:
        add(benchmarks)
    return benchmarks


@bench_command
def _add_midi(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "midi", help="MIDI -> note-state speed against pretty_midi on the Bach chorales"
    )
    parser.add_argument("--files", type=int, default=100, help="chorales to export (default 100)")
    parser.add_argument("--resolution", type=int, default=4, help="steps per quarter (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per reader (default 3)")
    parser.add_argument(
        "--midi-dir",
        help="folder of .mid files to use, or to export the chorales into and keep "
        "(default: a temporary folder)",
    )
    parser.set_defaults(func=_run_midi)


def _run_midi(args: argparse.Namespace) -> int:
    from musicgym.benchmarks import midi_conversion

    midi_conversion.run(
        num_files=args.files,
        resolution=args.resolution,
        repeats=args.repeats,
        midi_dir=args.midi_dir,
    )
    return 0


@bench_command
def _add_env(benchmarks: argparse._SubParsersAction) -> None:
    from musicgym.config import ENV_DEFAULTS, ENV_ID

    parser = benchmarks.add_parser(
        "env", help="env steps/s: batched vector env against the single env and SyncVectorEnv"
    )
    parser.add_argument(
        "--num-envs", type=int, nargs="+", default=[8, 64], help="vector sizes (default 8 64)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per row (default 3)")
    parser.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1)")
    parser.add_argument("--prior", default="bach16", help="shipped prior to time (default bach16)")
    parser.add_argument(
        "--env", choices=ENV_DEFAULTS, default=ENV_ID, help=f"the env to time (default {ENV_ID})"
    )
    parser.set_defaults(func=_run_env)


def _run_env(args: argparse.Namespace) -> int:
    from musicgym.benchmarks import env_bench
    from musicgym.config import CHORALE_ENV_ID

    timed = env_bench.run_chorales if args.env == CHORALE_ENV_ID else env_bench.run
    timed(num_envs=args.num_envs, seconds=args.seconds, threads=args.threads, prior_name=args.prior)
    return 0


@bench_command
def _add_prior(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "prior",
        help="prior training frames/s beside the matmul limit; JSB test likelihood vs published",
    )
    parser.add_argument("--threads", type=thread_count, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--checkpoint",
        default="jsb_quarter",
        help="prior for the likelihood row (default jsb_quarter)",
    )
    parser.add_argument(
        "--data",
        help="the JSB Chorales quarter-note JSON, jsb-chorales-quarter.json (not shipped; "
        "without it the likelihood row is left out)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps (default 3)")
    parser.set_defaults(func=_run_prior)


def _run_prior(args: argparse.Namespace) -> int:
    from musicgym.benchmarks import prior_bench

    prior_bench.run(
        threads=args.threads,
        checkpoint=args.checkpoint,
        data=args.data,
        repeats=args.repeats,
    )
    return 0


@bench_command
def _add_tuner(benchmarks: argparse._SubParsersAction) -> None:
    from musicgym.config import ENV_DEFAULTS, ENV_ID

    parser = benchmarks.add_parser(
        "tuner", help="RL Tuner training env-steps/s against the env alone, in one run"
    )
    parser.add_argument(
        "--prior",
        default="",
        help="prior, or several comma-separated (default: the environment's)",
    )
    parser.add_argument("--num-envs", type=int, default=16, help="vector size (default 16)")
    parser.add_argument("--steps", type=int, default=4_000, help="env steps a row (default 4000)")
    parser.add_argument(
        "--env", choices=ENV_DEFAULTS, default=ENV_ID, help=f"the environment (default {ENV_ID})"
    )
    parser.set_defaults(func=_run_tuner)


def _run_tuner(args: argparse.Namespace) -> int:
    from musicgym.benchmarks import tuner_bench

    tuner_bench.run(args.prior, num_envs=args.num_envs, steps=args.steps, env=args.env)
    return 0


def add_agents_arguments(parser: argparse.ArgumentParser, env: str) -> None:
    """The options of ``bench agents`` (and ``bench chorales``: ``env`` is the default
    ``--env``)."""
    from musicgym.arguments import add_dataclass_arguments
    from musicgym.benchmarks.agents_bench import AgentsBenchConfig
    from musicgym.tasks import TASKS

    splits = typing.get_args(typing.get_type_hints(AgentsBenchConfig)["split"])

    add_dataclass_arguments(
        parser, AgentsBenchConfig, exclude=("env", "agents", "seeds", "ray", "split")
    )
    parser.add_argument(
        "--split",
        choices=splits,
        default=argparse.SUPPRESS,  # absent unless given: --weights has its own default
        help="the split of the prior's data the data column is cut from: test (the default) to "
        "report results on, valid to choose settings on without looking at the test split",
    )
    parser.add_argument(
        "--env",
        choices=TASKS,
        default=env,
        help=f"the environment, melodies or chorales (default: {env})",
    )
    parser.add_argument(
        "--melodies", dest="pieces", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--agents",
        type=lambda text: tuple(text.split(",")),
        default=(),
        help="comma-separated agents (default: all of the environment's): prior, random, "
        "rules-only, rltuner-q, ...",
    )
    parser.add_argument(
        "--seeds",
        type=lambda text: tuple(int(s) for s in text.split(",")),
        default=(),
        help="comma-separated seeds; several give a t interval over seeds (default: 0 for "
        "melodies, 0,1,2 for chorales)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run each (agent, seed) as a task on the Ray cluster at ADDRESS (HOST:PORT, "
        "ray://HOST:PORT or auto), or without ADDRESS on a local Ray of --jobs CPUs; needs the "
        "ray extra",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small version (a few minutes): on melodies 5 agents, 1,000 steps, 100 melodies, "
        "2 jobs; on chorales prior, random, rules-only, rltuner-q and sb3-maskableppo, 2,000 "
        "decisions, 48 chorales (overrides --agents, --steps, --pieces and --jobs)",
    )


@bench_command
def _add_agents(benchmarks: argparse._SubParsersAction) -> None:
    from musicgym.config import ENV_ID

    parser = benchmarks.add_parser(
        "agents",
        help="train every agent on the same env and budget; statistics beside the data and papers",
    )
    add_agents_arguments(parser, ENV_ID)
    parser.set_defaults(func=_run_agents)


def _run_agents(args: argparse.Namespace) -> int:
    from musicgym.arguments import dataclass_from_args
    from musicgym.benchmarks import agents_bench

    quick = agents_bench.quick_settings(args.env) if args.quick else {}
    config = dataclass_from_args(agents_bench.AgentsBenchConfig, args, **quick)
    if config.ray is not None:  # before the minutes of the data column
        from musicgym.ray_cluster import check_ray

        check_ray(config.ray)
    agents_bench.run(config)
    return 0


@bench_command
def _add_like_for_like(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser(
        "like-for-like",
        help="the RL Tuner on a Note RNN and on a Bi-axial LSTM beside Jaques et al.'s columns",
    )
    parser.add_argument("note_rnn", help="a `bench agents` folder of a run on a Note RNN prior")
    parser.add_argument("biaxial", help="a `bench agents` folder of a run on a Bi-axial prior")
    parser.set_defaults(func=_run_like_for_like)


def _run_like_for_like(args: argparse.Namespace) -> int:
    from musicgym.benchmarks import like_for_like

    like_for_like.run(args.note_rnn, args.biaxial)
    return 0


@bench_command
def _add_chorales(benchmarks: argparse._SubParsersAction) -> None:
    from musicgym.tasks import CHORALE

    parser = benchmarks.add_parser(
        "chorales",
        help=f"`bench agents --env {CHORALE.env_id}`: Bach, prior samples, random, rules-only "
        "and tuned agents",
    )
    add_agents_arguments(parser, CHORALE.env_id)
    parser.add_argument(
        "--weights",
        action="store_true",
        help="print the measurements behind the weights of the --rules preset (default "
        "'chorale') instead",
    )
    parser.add_argument(
        "--percentile",
        type=percentile,
        help="with --weights: the percentile of what the prior gains by breaking a rule at "
        "which the measured weight wins (default 90)",
    )
    parser.epilog = (
        "--weights measures on Bach's validation chorales unless --split says otherwise: "
        "weights are settings, chosen without looking at the test split"
    )
    parser.add_argument(
        "--profiles",
        action="store_true",
        help="print Bach's profiles (the training chorales' shares that the profile rules "
        "ask for) instead",
    )
    parser.set_defaults(func=_run_chorales)


def _run_chorales(args: argparse.Namespace) -> int:
    from musicgym.tasks import CHORALE

    prior = args.prior or CHORALE.defaults.prior
    if args.percentile is not None and not args.weights:
        from musicgym.errors import ArgumentError

        raise ArgumentError("--percentile: only with --weights, whose measurement it sets")
    if args.weights:
        from musicgym.benchmarks.chorale_weights import rule_weight_evidence

        rules = args.rules or CHORALE.defaults.rules
        chosen = {} if args.percentile is None else {"percentile": args.percentile}
        if hasattr(args, "split"):
            chosen["split"] = args.split
        rule_weight_evidence(prior, args.bars, c=args.c, rules=rules, **chosen)
        return 0
    if args.profiles:
        from musicgym.benchmarks.chorale_weights import bach_profiles

        bach_profiles(prior)
        return 0
    return _run_agents(args)


@bench_command
def _add_all(benchmarks: argparse._SubParsersAction) -> None:
    parser = benchmarks.add_parser("all", help="every benchmark in turn")
    parser.add_argument(
        "--quick", action="store_true", help="a small version of each, a few minutes in all"
    )
    parser.add_argument("--out", default="runs/bench-all", help="folder of the agents' results")
    parser.add_argument(
        "--data", help="jsb-chorales-quarter.json for bench prior's likelihood row (not shipped)"
    )
    parser.set_defaults(func=_run_all)


def _run_all(args: argparse.Namespace) -> int:
    from musicgym.benchmarks import agents_bench, env_bench, midi_conversion, prior_bench
    from musicgym.benchmarks.gallery import write_gallery

    quick = args.quick
    print("== bench midi")
    midi_conversion.run(num_files=20 if quick else 100, repeats=1 if quick else 3)
    print("\n== bench prior")
    prior_bench.run(repeats=1 if quick else 3, data=args.data)
    print("\n== bench env")
    env_bench.run(num_envs=[8] if quick else [8, 64], seconds=1.0 if quick else 3.0, threads=1)
    print("\n== bench agents")
    config = agents_bench.AgentsBenchConfig(out=args.out, **(agents_bench.QUICK if quick else {}))
    agents_bench.run(config)
    print(f"\ngallery: {write_gallery(args.out)}")
    return 0
