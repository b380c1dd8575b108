"""The RL Tuner's targets, exploration and gradient step (``docs/spec/melody-rules.md``).

Q: ``r + γ max_a' Q⁻(s', a')`` (or double DQN, the online network's argmax valued by the target
network); Ψ: ``r + γ logsumexp_a' Ψ⁻(s', a')``; G: the environment gives the rules-only reward
``r_MT / c`` and the target is ``r_MT/c + γ logsumexp_a' (G⁻(s', a') + log p(a'|s'))``. The
policies: argmax / softmax of Q, softmax(Ψ), softmax(G + log p). Where an environment has invalid
actions, its mask leaves them out of every max, logsumexp and choice.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adadelta import adadelta as functional_adadelta

from musicgym.agents.rl_tuner.config import RLTunerConfig, Target
from musicgym.agents.rl_tuner.network import QNetwork, soft_update
from musicgym.agents.rl_tuner.parts import States, Transitions
from musicgym.errors import EnvArgumentError


def masked_values(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``values`` with ``-inf`` where ``mask`` is false (none without a mask)."""
    return values if mask is None else values.masked_fill(~mask, -math.inf)


def policy_logits(
    algo: Target, values: torch.Tensor, prior_log_probs: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of the policy: Q or Ψ themselves; G + log p for G-learning."""
    if algo == "g":
        assert prior_log_probs is not None, "G-learning's policy needs the prior's log p"
        return values + prior_log_probs
    return values


def td_target(
    algo: Target,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    gamma: float | torch.Tensor,
    next_target_values: torch.Tensor,
    next_prior_log_probs: torch.Tensor | None = None,
    next_online_values: torch.Tensor | None = None,
    next_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The TD target ``(B,)`` of each algorithm (see the module docstring). ``dones`` (1 at the
    last step) drop the bootstrap term; ``gamma`` may be one per sample; ``next_mask`` ``(B, A)``,
    the valid actions in ``s'``, restricts the max, argmax and logsumexp to them."""
    next_target_values = masked_values(next_target_values, next_mask)
    if next_online_values is not None:
        next_online_values = masked_values(next_online_values, next_mask)
    if algo == "q":
        if next_online_values is None:
            next_value = next_target_values.max(1).values
        else:
            best = next_online_values.argmax(1, keepdim=True)
            next_value = next_target_values.gather(1, best)[:, 0]
    elif algo == "psi":
        next_value = torch.logsumexp(next_target_values, 1)
    elif algo == "g":
        assert next_prior_log_probs is not None, "G-learning's target needs the prior's log p"
        next_value = torch.logsumexp(next_target_values + next_prior_log_probs, 1)
    else:
        raise ValueError(f"unknown algorithm {algo!r}")
    return rewards + gamma * (1.0 - dones.float()) * next_value


def linear_schedule(start: float, end: float, duration: float, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` steps, then ``end``."""
    if duration <= 0:
        return end
    return start + min(step / duration, 1.0) * (end - start)


def explore(
    logits: torch.Tensor,
    epsilon: float,
    rng: np.random.Generator,
    config: RLTunerConfig,
    mask: torch.Tensor | None = None,
) -> np.ndarray:
    """Actions ``(M,)`` from policy ``logits`` ``(M, A)``: Boltzmann (softmax of ``logits /
    temperature``) or epsilon-greedy (the argmax, else with probability ``epsilon`` a uniform
    action), only among the valid actions of ``mask`` where given."""
    logits = masked_values(logits, mask)
    if config.exploration == "boltzmann":
        return torch.multinomial(F.softmax(logits / config.temperature, 1), 1)[:, 0].numpy()
    actions = logits.argmax(1).numpy()
    explored = rng.random(len(actions)) < epsilon
    if mask is None:
        actions[explored] = rng.integers(0, logits.shape[1], explored.sum())
    else:
        for i in np.flatnonzero(explored):
            actions[i] = rng.choice(np.flatnonzero(mask[i].numpy()))
    return actions


def make_optimizer(config: RLTunerConfig, network: nn.Module) -> torch.optim.Optimizer:
    """Adam (one fused call over the tensors: the same numbers as the loop over them; with
    ``--compile`` fused, whose state lives on the parameters' device, and stepped by
    :func:`functional_step`) or Adadelta; the rule outcomes' weights (``--rule-features``) at
    ``rule_learning_rate``."""
    rules = getattr(network, "rule_weights", None)
    params = [p for p in network.parameters() if p.requires_grad and p is not rules]
    groups = [{"params": params}]
    if rules is not None and rules.requires_grad:  # (DPG sets them instead)
        groups.append({"params": [rules], "lr": config.rule_learning_rate})
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(groups, lr=config.learning_rate, foreach=True)
    fused = {"fused": True} if config.compile else {"foreach": True}
    return torch.optim.Adam(groups, lr=config.learning_rate, **fused)


def clip_gradients(config: RLTunerConfig, params: list[torch.Tensor]) -> None:
    """Clip the gradients of ``params`` by norm, all together (``clip_grad_norm_``) or each
    parameter tensor alone (Magenta's per-variable clipping: ``clip_grad_norm_``'s formula per
    tensor, in fused calls over the tensors)."""
    if config.max_grad_norm <= 0:
        return
    if config.clip == "global":
        nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        return
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack(torch._foreach_norm(grads))  # (P,): one norm per parameter tensor
    scales = (config.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, scales.unbind())


def transition_loss(
    values: Callable[[States], torch.Tensor],
    target_network: QNetwork,
    config: RLTunerConfig,
    batch: Transitions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The TD loss of a batch of transitions and the Q-values of its actions ``(B,)``;
    ``values`` is the online network (or a call of it with other parameters)."""
    q_values = values(batch.states).gather(1, batch.actions[:, None])[:, 0]
    with torch.no_grad():
        next_states = batch.next_states
        next_online = None
        if config.double_q and config.algo == "q":
            next_online = values(next_states)
        target = td_target(
            config.algo,
            batch.rewards,
            batch.dones,
            batch.gamma,
            target_network(next_states),
            next_states.log_probs,
            next_online,
            next_states.mask,
        )
    loss_fn = F.smooth_l1_loss if config.loss == "huber" else F.mse_loss
    return loss_fn(q_values, target), q_values.detach()


MOMENTS = {
    torch.optim.Adam: ("exp_avg", "exp_avg_sq"),
    torch.optim.Adadelta: ("square_avg", "acc_delta"),
}
"""The state each optimizer keeps per parameter beside its step count: zeros at step 0."""


def start_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give ``optimizer`` the state its first step would start from (as its own lazy start:
    the step count 0, on the parameter's device as with ``fused`` or ``capturable``, and
    zeros of each moment)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            for moment in MOMENTS[type(optimizer)]:
                state[moment] = torch.zeros_like(p, memory_format=torch.preserve_format)


def adam_factors(optimizer: torch.optim.Optimizer, first: int, count: int = 1) -> torch.Tensor:
    """``(count, G, 2)``: for each of Adam's steps ``t = first, ..., first + count - 1`` and each
    parameter group, the step size ``lr / (1 - beta1^t)`` and the square root of the bias
    correction ``1 - beta2^t``, computed as torch.optim's Adam computes them (in Python
    floats). A compiled step takes them as an input: traced from the step count, inductor would
    call ``pow`` and ``sqrt`` once for every 16 weights (libm calls that may set ``errno`` are
    not moved out of a loop)."""
    factors = []
    for step in range(first, first + count):
        factors.append([])
        for group in optimizer.param_groups:
            beta1, beta2 = group["betas"]
            factors[-1].append([group["lr"] / (1 - beta1**step), (1 - beta2**step) ** 0.5])
    device = optimizer.param_groups[0]["params"][0].device
    return torch.tensor(factors, dtype=torch.float32, device=device)


def functional_step(optimizer: torch.optim.Optimizer, factors: torch.Tensor | None) -> None:
    """``optimizer.step()`` (Adam or Adadelta, state started) in operations that
    ``torch.compile`` traces into the graph around it (``step()`` itself breaks the graph
    before and after). Adam as torch.optim's foreach Adam computes it (no weight decay, as
    :func:`make_optimizer` builds it), with its step's row of :func:`adam_factors`,
    ``factors`` ``(G, 2)``; Adadelta by torch.optim's functional API."""
    for index, group in enumerate(optimizer.param_groups):
        params = group["params"]
        state = [optimizer.state[p] for p in params]
        grads, steps = [p.grad for p in params], [s["step"] for s in state]
        first, second = ([s[moment] for s in state] for moment in MOMENTS[type(optimizer)])
        if isinstance(optimizer, torch.optim.Adadelta):
            functional_adadelta(
                params, grads, first, second, steps, foreach=True, capturable=True,
                lr=group["lr"], rho=group["rho"], eps=group["eps"],
                weight_decay=group["weight_decay"], maximize=group["maximize"],
            )  # fmt: skip
            continue
        assert factors is not None, "Adam's step needs its factors"
        beta1, beta2 = group["betas"]
        step_size, bias_correction2_sqrt = factors[index]
        torch._foreach_add_(steps, 1.0)
        torch._foreach_lerp_(first, grads, 1 - beta1)
        torch._foreach_mul_(second, beta2)
        torch._foreach_addcmul_(second, grads, grads, 1 - beta2)
        denominators = torch._foreach_sqrt(second)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, group["eps"])
        updates = torch._foreach_div(first, denominators)
        torch._foreach_mul_(updates, -step_size)
        torch._foreach_add_(params, updates)


UPDATES_PER_CALL = 4
"""Gradient steps one compiled call takes where that many are due at once (``--compile``;
Magenta's one update per 4 environment steps makes 4 per vector step of 16 environments): the
call's fixed cost, dynamo's guards and inductor's wrapper, is paid once for them (1.2x per
update on the Note RNN). The rest take a call of one step each; the numbers are the same. Only
where the environments step together (``TunerPart.steps_together``): there the counts due
repeat from the start, so both graphs (four steps, one) compile in the first updates;
elsewhere the second would compile whenever another count first came."""


COMPILED_LEARNERS = 32
"""Compiled learners (``--compile``) one process may use at once. Dynamo guards a learner's
step on the learner's own parameters and optimizer, so each learner adds up to two entries
(calls of four steps and of one) to the step's cache, where torch's default limit of 8 entries
would run the fifth learner eagerly without a word. A new learner clears the entries of those
before it (a sweep or a notebook trains one after another; one of them used again compiles
again), the step's limit is raised to this many learners in use together, and past it the
learner says so."""


class Learner:
    """The online and target networks and the optimizer: one gradient step at a time. With
    ``--compile`` the whole step (both networks' forward, the gradients, the clipping, the
    optimizer's step and the soft target update) is one compiled function, and
    :data:`UPDATES_PER_CALL` steps due at once are one compiled call."""

    def __init__(self, q_network: QNetwork, target_network: QNetwork, config: RLTunerConfig):
        self.q_network, self.target_network, self.config = q_network, target_network, config
        self.optimizer = make_optimizer(config, q_network)
        self.online_params = list(q_network.parameters())
        self.target_params = list(target_network.parameters())
        self.trained = {n: p for n, p in q_network.named_parameters() if p.requires_grad}
        self.compiled = None
        if config.compile:  # (the step's cache entries so far are of the learners before)
            torch._dynamo.reset_code(Learner._traced_steps.__code__)
            self.compiled = torch.compile(self._traced_steps, dynamic=False)
        self.updates_per_call = UPDATES_PER_CALL if q_network.part.steps_together else 1
        self.compiled_sizes: set[int] = set()
        """The numbers of steps a compiled call has taken (each one's graph is made)."""

    def step(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch's TD loss (gradients clipped) and the soft target
        update ``θ⁻ ← (1 - eta) θ⁻ + eta θ``; the loss and the mean Q-value, as tensors."""
        return self.steps([batch])[0]

    def steps(self, batches: list[Transitions]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`step` on each of ``batches`` in turn (compiled, in calls of
        :data:`UPDATES_PER_CALL` where the part steps together); the loss and mean Q-value of
        each."""
        if self.compiled is None:
            return [self._eager_step(batch) for batch in batches]
        done: list[tuple[torch.Tensor, torch.Tensor]] = []
        calls, rest = divmod(len(batches), self.updates_per_call)
        sizes = [self.updates_per_call] * calls + [1] * rest
        for size in sizes:
            done += self._compiled_steps(tuple(batches[len(done) : len(done) + size]))
        return done

    def _eager_step(self, batch: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        loss, q_values = transition_loss(self.q_network, self.target_network, self.config, batch)
        self.optimizer.zero_grad()
        loss.backward()
        self._apply_gradients(self.optimizer.step)
        return loss.detach(), q_values.mean()

    def _compiled_steps(
        self, batches: tuple[Transitions, ...]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        optimizer, factors = self.optimizer, None
        if not optimizer.state:
            start_optimizer_state(optimizer)
        if isinstance(optimizer, torch.optim.Adam):  # the step counts of the steps to come
            taken = int(next(iter(optimizer.state.values()))["step"])
            factors = adam_factors(optimizer, taken + 1, len(batches))
        room = contextlib.nullcontext()
        if len(batches) not in self.compiled_sizes:  # this call compiles: the limits above
            self.compiled_sizes.add(len(batches))
            limit = {"recompile_limit": 2 * COMPILED_LEARNERS, "fail_on_recompile_limit_hit": True}
            room = torch._dynamo.config.patch(limit)
        try:
            with torch.no_grad(), room:
                return self.compiled(batches, factors)
        except torch._dynamo.exc.BackendCompilerFailed as error:
            first = str(error).strip().splitlines()[0][:200]
            raise EnvArgumentError(
                f"--compile: torch.compile could not compile the learner here ({first}); "
                "train without --compile"
            ) from None
        except torch._dynamo.exc.FailOnRecompileLimitHit:
            raise EnvArgumentError(
                f"--compile: this process uses {COMPILED_LEARNERS} compiled learners at once, "
                "as many as it may; train this one in a new process, or without --compile"
            ) from None

    def _traced_steps(
        self, batches: tuple[Transitions, ...], factors: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`_traced_step` on each of ``batches``, Adam's ``factors`` ``(len(batches), G,
        2)``: what one compiled call traces."""
        return [
            self._traced_step(batch, None if factors is None else factors[index])
            for index, batch in enumerate(batches)
        ]

    def _traced_step(
        self, batch: Transitions, factors: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`step` as one function ``torch.compile`` traces whole: the gradients by
        ``torch.func`` instead of ``backward``; Adam's ``factors`` (:func:`adam_factors`)."""

        def loss_of(trained: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            def values(states: States) -> torch.Tensor:
                return torch.func.functional_call(self.q_network, trained, (states,))

            return transition_loss(values, self.target_network, self.config, batch)

        grads, (loss, q_values) = torch.func.grad_and_value(loss_of, has_aux=True)(self.trained)
        for name, parameter in self.trained.items():
            parameter.grad = grads[name]
        self._apply_gradients(partial(functional_step, self.optimizer, factors))
        return loss, q_values.mean()

    def _apply_gradients(self, optimizer_step: Callable[[], object]) -> None:
        """Clip the gradients, take the optimizer's step, move the target network."""
        clip_gradients(self.config, self.online_params)
        optimizer_step()
        soft_update(self.target_params, self.online_params, self.config.eta)
