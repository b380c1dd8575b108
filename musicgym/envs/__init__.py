"""The composition environments: ``MusicComposition-v0`` (:mod:`musicgym.envs.melody`) and
``ChoraleComposition-v0`` (:mod:`musicgym.envs.chorale`) on one batched base
(:mod:`musicgym.envs.batched`), and the token stepper that plays melodies into a prior."""
