"""Every algorithm ``musicgym agent train`` trains, in one table (like rl-zoo3's ``ALGOS``).

:data:`ALGORITHMS` maps a name to what makes it: its settings' dataclass, its train function and
its load function (``"module:attribute"`` strings, imported on first use so that the CLI starts
fast), and the settings the name fixes (``rltuner-q``: ``algo="q"``). The CLI,
:func:`musicgym.agents.load` and the benchmarks read this table and keep no list of their own.

* train: ``train(config, out, *, resume=False, overwrite=False, progress=True)``, writing a run
  folder with ``agent.json`` (:func:`musicgym.agents.common.write_agent_info`);
* load: ``load(folder, info)``, the agent of a run folder (``info``: its ``agent.json``), a
  :class:`musicgym.agents.common.Composer`.

A Stable-Baselines3 or sb3-contrib algorithm is one line (``"sb3-trpo": sb3("trpo")``, the class
found by name); a new algorithm is its module plus one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)


@dataclass(frozen=True)
class Algorithm:
    """How to train and load one algorithm (see the module docstring)."""

    config: str
    train: str
    load: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def config_class(self) -> type:
        return _resolve(self.config)

    def make_config(self, **settings: Any) -> Any:
        """Its settings' dataclass from ``settings`` and the name's fixed ones."""
        return self.config_class(**{**settings, **self.settings})

    def train_run(self, config: Any, out: Any, **options: Any) -> Any:
        """Train into the run folder ``out`` (``options``: resume, overwrite, progress)."""
        return _resolve(self.train)(config, out, **options)

    def load_agent(self, folder: Any, info: dict[str, Any]) -> Any:
        return _resolve(self.load)(folder, info)


def rl_tuner(algo: str) -> Algorithm:
    return Algorithm(
        "musicgym.agents.rl_tuner:RLTunerConfig",
        "musicgym.agents.rl_tuner:train",
        "musicgym.agents.rl_tuner:load_agent",
        {"algo": algo},
    )


def sb3(algo: str) -> Algorithm:
    return Algorithm(
        "musicgym.agents.baselines:SB3Config",
        "musicgym.agents.baselines:train",
        "musicgym.agents.baselines:load_agent",
        {"algo": algo},
    )


DPO = Algorithm(
    "musicgym.agents.dpo:DPOConfig",
    "musicgym.agents.dpo:train",
    "musicgym.agents.rl_tuner:load_agent",  # its run folder is an RL Tuner's
)


DPG = Algorithm(
    "musicgym.agents.dpg:DPGConfig",
    "musicgym.agents.dpo:train",
    "musicgym.agents.rl_tuner:load_agent",  # its run folder is an RL Tuner's
)


ALGORITHMS: dict[str, Algorithm] = {
    "rltuner-q": rl_tuner("q"),
    "rltuner-psi": rl_tuner("psi"),
    "rltuner-g": rl_tuner("g"),
    "sb3-dqn": sb3("dqn"),
    "sb3-ppo": sb3("ppo"),
    "sb3-a2c": sb3("a2c"),
    "sb3-qrdqn": sb3("qrdqn"),
    "sb3-recurrentppo": sb3("recurrentppo"),
    "sb3-maskableppo": sb3("maskableppo"),  # masks the invalid actions of ChoraleComposition-v0
    "sb3-ppokl": sb3("ppokl"),  # the prior fine-tuned by PPO with a KL penalty (agents/ppo_kl.py)
    "dpo": DPO,  # online DPO of the prior on pairs ranked by the env's return (agents/dpo.py)
    "dpg": DPG,  # DPG toward the prior constrained by the rules (agents/dpg.py)
}
"""What ``musicgym agent train --algo`` trains, by name."""


def config_classes() -> list[type]:
    """The settings' dataclasses of every algorithm, each once, in table order."""
    classes: list[type] = []
    for algorithm in ALGORITHMS.values():
        if algorithm.config_class not in classes:
            classes.append(algorithm.config_class)
    return classes
