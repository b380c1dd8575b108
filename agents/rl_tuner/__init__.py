"""The RL Tuner (Jaques et al. 2017): a recurrent DQN primed from the prior; Q, Ψ and G targets.

One learner for every environment, read as CleanRL's ``dqn.py`` but importable and tested:

* :mod:`~musicgym.agents.rl_tuner.config`: the hyperparameters, :class:`RLTunerConfig`;
* :mod:`~musicgym.agents.rl_tuner.network`: the Q-network, ``log p(·|s) + head(φ(s))``;
* :mod:`~musicgym.agents.rl_tuner.targets`: the Q, Ψ and G targets, exploration, the update;
* :mod:`~musicgym.agents.rl_tuner.parts`: what differs between environments, one part each
  (:mod:`~musicgym.agents.rl_tuner.melody`, :mod:`~musicgym.agents.rl_tuner.chorale`): the
  features beside the prior's summary and the replay memory;
* :mod:`~musicgym.agents.rl_tuner.agent`: :class:`RLTuner`, the networks, acting, composing and
  checkpoints;
* :mod:`~musicgym.agents.rl_tuner.loop`: :func:`train`, the loop ``act -> step -> store ->
  learn`` and its callbacks (progress, TensorBoard, evaluations, checkpoints).

The agent reads the prior only through the environment: it makes its environments with
``observation="prior"`` and reads the prior's summary φ(s) and ``log p(·|s)`` (and the mask of
the valid actions) from their observations, so the prior runs once per step, in the environment,
and Gymnasium's next-step autoreset is followed as documented. An update runs only the small
MLP over cached states (the frozen prior's summaries, kept with the replay).
"""

from musicgym.agents.rl_tuner.agent import CHECKPOINT, RLTuner, load_agent
from musicgym.agents.rl_tuner.config import RLTunerConfig
from musicgym.agents.rl_tuner.loop import TrainingRun, train
from musicgym.agents.rl_tuner.targets import explore, linear_schedule, policy_logits, td_target

__all__ = [
    "CHECKPOINT",
    "RLTuner",
    "RLTunerConfig",
    "TrainingRun",
    "explore",
    "linear_schedule",
    "load_agent",
    "policy_logits",
    "td_target",
    "train",
]
