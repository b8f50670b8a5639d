"""An Optuna search where autolr sets the learning rate (lines marked ``# autolr``).

Run it with::

    pip install "torch-autolr[optuna]"
    python examples/optuna_search.py

A small MLP learns a generated 3-class problem. Two studies of 6 TPE trials each tune the width and dropout:

1. per trial: ``suggest_lr`` runs a range test on each trial's model (one range test per trial), applies the LR,
   records it on the trial and prunes a trial whose curve gives no confident LR; ``TrialReporter`` sends the
   training loss to the ``MedianPruner``;
2. per study: ``narrow_lr_range`` runs one range test up front, the sampler searches the LR inside the range read
   off the curve, and the first trial runs at the suggestion.

About 15 s on an idle 2-core CPU.
"""

from __future__ import annotations

import optuna
import torch
from torch import nn

from autolr import AutoLR
from autolr.integrations.optuna import TrialReporter, narrow_lr_range, suggest_lr  # autolr


def data(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = (torch.tanh(x[:, :8]) @ torch.randn(8, 3, generator=torch.Generator().manual_seed(0))).argmax(dim=1)
    return list(zip(x.split(32), y.split(32)))


TRAIN, VAL = data(1024, 1), data(512, 2)
STEPS = 150


def build(width: int, dropout: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, tuner: AutoLR | None = None,
          reporter: TrialReporter | None = None) -> float:
    model.train()
    for i in range(STEPS):
        x, y = TRAIN[i % len(TRAIN)]
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if tuner is not None:
            tuner.observe(loss)
        if reporter is not None:
            reporter.raise_if_pruned()  # autolr
    model.eval()
    with torch.no_grad():
        return sum(nn.functional.cross_entropy(model(x), y).item() for x, y in VAL) / len(VAL)


def per_trial(trial: optuna.Trial) -> float:
    model, optimizer = build(trial.suggest_int("width", 16, 128, log=True), trial.suggest_float("dropout", 0.0, 0.5))
    suggest_lr(trial, model, optimizer, TRAIN, loss_fn=nn.CrossEntropyLoss(), min_confidence=0.1)  # autolr
    reporter = TrialReporter(trial, interval=10)  # autolr
    tuner = AutoLR(model, optimizer, schedule="constant", weight_decay=None, reporters=[reporter], progress=False)
    tuner.apply_plan(tuner_plan(optimizer))
    return train(model, optimizer, tuner, reporter)


def tuner_plan(optimizer: torch.optim.Optimizer):
    """A constant plan at the LR suggest_lr set: AutoLR then only observes the loss (guard, pruning bridge)."""
    from autolr.plan import make_plan
    from autolr.suggest import Suggestion

    lr = optimizer.param_groups[0]["lr"]
    return make_plan(Suggestion(lr, "suggest_lr", 1.0, "set by suggest_lr"), param_group_lrs=[lr],
                     optimizer_name="SGD", total_steps=STEPS, schedule="constant", weight_decay=None)


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
    study = optuna.create_study(sampler=sampler, pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    study.optimize(per_trial, n_trials=6)
    print("per trial (one range test each):")
    for t in study.trials:
        print(f"  #{t.number} {t.state.name:8s} value {t.value if t.value is None else round(t.value, 4)} "
              f"params {({k: round(v, 4) for k, v in t.params.items()})} "
              f"confidence {t.user_attrs['autolr/confidence']}")

    study2 = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))
    low, high = narrow_lr_range(study2, *build(64, 0.1), TRAIN, loss_fn=nn.CrossEntropyLoss())  # autolr
    print(f"per study: one range test, LR searched in [{low:.2e}, {high:.2e}], "
          f"suggestion {study2.user_attrs['autolr/lr']:.2e} enqueued first")

    def objective(trial: optuna.Trial) -> float:
        model, optimizer = build(trial.suggest_int("width", 16, 128, log=True),
                                 trial.suggest_float("dropout", 0.0, 0.5))
        for group in optimizer.param_groups:
            group["lr"] = trial.suggest_float("lr", low, high, log=True)
        return train(model, optimizer)

    study2.optimize(objective, n_trials=6)
    for t in study2.trials:
        print(f"  #{t.number} value {t.value:.4f} params {({k: round(v, 4) for k, v in t.params.items()})}")
    print(f"best: per trial {study.best_value:.4f}, per study {study2.best_value:.4f}")


if __name__ == "__main__":
    main()
