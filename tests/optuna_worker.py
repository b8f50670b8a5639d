"""One worker of the shared-storage tests: loads the study from the shared storage and runs trials with suggest_lr.

The storage argument is a database URL (``sqlite:///study.db``), or the path of a journal file (ending in ``.log``)
shared through Optuna's ``JournalStorage``."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autolr.integrations.optuna import suggest_lr
from tests import tasks


def objective(trial: optuna.Trial) -> float:
    # hidden >= 16: every (trial number, width) this test can draw gives a confident suggestion (checked over
    # numbers 0-3 and widths 8-32; width 8 with seeds 1 and 3 is a legitimate "no LR" prune, not what this tests)
    torch.manual_seed(trial.number)
    model = tasks.BNDropoutNet(hidden=trial.suggest_int("hidden", 16, 32))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    suggest_lr(trial, model, optimizer, tasks.batches(count=4), loss_fn=torch.nn.CrossEntropyLoss(), num_steps=40)
    return tasks.train(model, optimizer, tasks.batches(count=4), steps=5)[-1]


def storage_from(arg: str) -> str | optuna.storages.BaseStorage:
    """A database URL as it is; a ``.log`` path as a journal file (several processes append to it, under a lock)."""
    if arg.endswith(".log"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(arg))
    return arg


if __name__ == "__main__":
    storage, name, trials = storage_from(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    study.optimize(objective, n_trials=trials)
