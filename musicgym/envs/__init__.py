"""The composition environments: ``MusicComposition-v0`` (:mod:`musicgym.envs.melody`), the
melody actions as prior frames, and the token stepper that plays melodies into a prior."""
