"""The composition environments: ``MusicComposition-v0`` (:mod:`musicgym.envs.melody`) and
``ChoraleComposition-v0`` (:mod:`musicgym.envs.chorale`) on one batched base
(:mod:`musicgym.envs.batched`), and what plays a piece into a prior for them and for the agents:
the token stepper of melodies (:mod:`musicgym.envs.stepper`) and the decision stepper of chorales
(:mod:`musicgym.envs.decisions`)."""
