"""A grid whose only work is BOHB's: one setting searched and evaluated for one epoch, then BOHB
(budgets 1 to 3 epochs), for the tests of BOHB's resume and warm start."""

from __future__ import annotations

__all__ = ["bohb_grid"]

BOHB_GRID = """
name: {name}
dataset: {{store: {store}}}
space: {{operators: [S2], discretizations: [all], inputs: [1], cells: [1], channels: 8}}
repeats: 1
search: {{epochs: 1, warmup_epochs: 0, batch_size: 16, lr: 0.05, arch_lr: 0.003, learned_margin: -100}}
evaluation: {{epochs: 1, batch_size: 16, lr: 0.05}}
baselines: {{enabled: false}}
random: {{enabled: false}}
bohb: {{samples: {samples}, min_epochs: 1, max_epochs: 3, eta: 3, iterations: 1, warm_start: {warm}}}
resources: {{gpus_per_trial: 0, cpus_per_trial: 1}}
seed: 11
storage: {storage}
"""


def bohb_grid(store, storage, *, name: str, samples: int, warm: str = "[]") -> str:
    """The grid's text; ``warm`` is bohb.warm_start as YAML (a list of job directories)."""
    return BOHB_GRID.format(name=name, store=store, storage=storage, samples=samples, warm=warm)
