"""Shared fixtures: seeded RNGs, CUDA marker handling, isolated W&B directories."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from hypothesis import settings

# CI runs the property tests with a fixed seed and no per-example deadline (the CI machine is shared and
# noisy); locally hypothesis explores new examples every run.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    """Hermetic offline W&B: every W&B directory under tmp_path, no credentials. Yields <WANDB_DIR>/wandb.

    Skips the test when wandb (the ``wandb`` extra) is not installed."""
    wandb = pytest.importorskip("wandb")
    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in [("WANDB_DIR", "wb"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_DATA_DIR", "data")]:  # fmt: skip
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    wandb.teardown()  # wandb reads its environment once per process setup; start from a fresh one
    yield tmp_path / "wb" / "wandb"
    if wandb.run is not None:
        wandb.run.finish()
    wandb.teardown()
