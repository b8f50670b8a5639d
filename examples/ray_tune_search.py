"""A Ray Tune search where autolr sets the learning rate (lines marked ``# autolr``).

Run it with::

    pip install "torch-autolr[ray]"
    python examples/ray_tune_search.py

A small MLP learns a generated 3-class problem. Two searches of 6 random-search trials each tune the width and
dropout, on a local Ray instance:

1. per trial: ``suggest_lr`` runs a range test in each trial (one range test per trial), applies the LR, returns it
   as metrics that go into every report, and ends a trial whose curve gives no confident LR; ``TuneReporter`` sends
   the training loss to the ASHA scheduler, which stops the trials that fall behind;
2. per search: ``narrow_lr_range`` runs one range test up front, Tune searches the LR in the ``tune.loguniform``
   read off the curve, and the first trial runs at the suggestion (``points_to_evaluate``).

About 70 s on a busy 2-core CPU (Ray's start is about 10 s of it).
"""

from __future__ import annotations

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from torch import nn

from autolr import AutoLR
from autolr.integrations.ray import TuneReporter, narrow_lr_range, suggest_lr  # autolr


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
          reporter: TuneReporter | None = None) -> float:
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
            reporter.raise_if_stopped()  # autolr
    model.eval()
    with torch.no_grad():
        return sum(nn.functional.cross_entropy(model(x), y).item() for x, y in VAL) / len(VAL)


def tuner_plan(optimizer: torch.optim.Optimizer):
    """A constant plan at the LR suggest_lr set: AutoLR then only observes the loss (guard, the Tune reporter)."""
    from autolr.plan import make_plan
    from autolr.suggest import Suggestion

    lr = optimizer.param_groups[0]["lr"]
    return make_plan(Suggestion(lr, "suggest_lr", 1.0, "set by suggest_lr"), param_group_lrs=[lr],
                     optimizer_name="SGD", total_steps=STEPS, schedule="constant", weight_decay=None)


def per_trial(config: dict) -> None:
    model, optimizer = build(config["width"], config["dropout"])
    lr = suggest_lr(model, optimizer, TRAIN, loss_fn=nn.CrossEntropyLoss(), metric="loss",  # autolr
                    min_confidence=0.1)
    reporter = TuneReporter(metric="loss", interval=10, extra=lr)  # autolr: the training loss, every 10 steps
    tuner = AutoLR(model, optimizer, schedule="constant", weight_decay=None, reporters=[reporter], progress=False)
    tuner.apply_plan(tuner_plan(optimizer))
    tune.report({"loss": train(model, optimizer, tuner, reporter), "validation": True, **lr})


def per_search_trial(config: dict) -> None:
    model, optimizer = build(config["width"], config["dropout"])
    for group in optimizer.param_groups:
        group["lr"] = config["lr"]
    tune.report({"loss": train(model, optimizer)})


SPACE = {"width": tune.lograndint(16, 129), "dropout": tune.uniform(0.0, 0.5)}


def run(trainable, param_space: dict, name: str, **tune_config) -> tune.ResultGrid:
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6, reuse_actors=True, **tune_config),
        run_config=tune.RunConfig(name=name, verbose=0),
    ).fit()


def main() -> None:
    ray.init(include_dashboard=False, log_to_driver=False)

    # time_attr: the reporter's step count (one result per report; ASHA compares trials at 30, 60, 120 steps)
    asha = ASHAScheduler(time_attr="autolr/step", grace_period=30, max_t=STEPS, reduction_factor=2)
    results = run(per_trial, SPACE, "autolr_per_trial", scheduler=asha,
                  search_alg=BasicVariantGenerator(random_state=0, max_concurrent=2))
    print("per trial (one range test each):")
    for r in sorted(results, key=lambda r: r.config["width"]):
        m = r.metrics
        if "autolr/pruned" in m:
            end = f"ended before training: {m['autolr/pruned']}"
        elif m.get("validation"):
            end = f"validation loss {m['loss']:.4f}"
        else:
            end = f"stopped by ASHA at step {m['autolr/step']} (training loss {m['loss']:.4f})"
        print(f"  width {r.config['width']:3d} dropout {r.config['dropout']:.2f}: lr {m['autolr/lr']:.2e} "
              f"(confidence {m['autolr/confidence']:.2f}), {end}")

    space, points, result = narrow_lr_range(*build(64, 0.1), TRAIN, loss_fn=nn.CrossEntropyLoss())  # autolr
    print(f"per search: one range test, LR searched in [{space.lower:.2e}, {space.upper:.2e}], "
          f"suggestion {result.lr:.2e} run first")
    results2 = run(per_search_trial, {**SPACE, "lr": space}, "autolr_per_search",
                   search_alg=BasicVariantGenerator(points_to_evaluate=points, random_state=0, max_concurrent=2))
    for r in results2:
        print(f"  width {r.config['width']:3d} dropout {r.config['dropout']:.2f} lr {r.config['lr']:.2e}: "
              f"validation loss {r.metrics['loss']:.4f}")
    best = min(r.metrics["loss"] for r in results if r.metrics.get("validation"))  # not a stopped trial's train loss
    print(f"best validation loss: per trial {best:.4f}, per search {results2.get_best_result().metrics['loss']:.4f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
