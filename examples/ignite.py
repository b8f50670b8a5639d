"""An Ignite trainer, auto-tuned by one handler (lines marked ``# autolr``), next to Ignite's own FastaiLRFinder.

Run it with::

    pip install "torch-autolr[ignite]"
    python examples/ignite.py

A small byte-level language model (an MLP over the previous 16 bytes) learns the Python documentation that
ships with the interpreter. The trainer is Ignite's ``create_supervised_trainer`` with gradient accumulation (2
iterations per optimizer step) and an evaluator computing the held-out loss at every epoch end.
``AutoLRHandler`` runs the range test at ``Events.STARTED`` through that very process function, restores
everything, applies the plan and steps its schedule after every real optimizer step. The script prints the plan,
the LR trace of training, then saves a ``Checkpoint`` after epoch 1 and resumes from it in fresh objects
(the optimizer loaded before the handler): no new range test, the same LR trajectory.

First, Ignite's ``FastaiLRFinder`` runs on an identical copy of the model, over the same LR range, for
comparison: its suggestion, and what each finder leaves behind (weights, RNG, events fired during the sweep).
About 10 s on an idle 2-core CPU.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# this file is called ignite.py: keep its folder off the import path, so that `import ignite` finds pytorch-ignite
sys.path.remove(next((p for p in sys.path if Path(p or ".").resolve() == Path(__file__).resolve().parent), ""))

import torch
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import Checkpoint, DiskSaver, FastaiLRFinder
from ignite.metrics import Loss
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autolr.integrations.ignite import AutoLRHandler  # autolr
from autolr.range_test import range_test_running

CONTEXT, EPOCHS, BATCH, ACCUMULATION = 16, 3, 32, 2


def byte_windows(count: int, seed: int) -> TensorDataset:
    """(previous CONTEXT bytes, next byte) pairs from the Python docs that ship with the interpreter."""
    import pydoc_data.topics

    text = " ".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).encode("ascii", "ignore")
    ids = torch.tensor(list(text), dtype=torch.long)
    starts = torch.randint(0, len(ids) - CONTEXT - 1, (count,), generator=torch.Generator().manual_seed(seed))
    windows = torch.stack([ids[s:s + CONTEXT + 1] for s in starts.tolist()])
    return TensorDataset(windows[:, :-1], windows[:, -1])


TRAIN, HELD_OUT = byte_windows(BATCH * 120, seed=0), byte_windows(512, seed=1)


def build() -> tuple[nn.Module, torch.optim.Optimizer, Engine, Engine, DataLoader]:
    """The model, optimizer, trainer and evaluator, seeded: every call builds identical ones."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(256, 32), nn.Flatten(), nn.Linear(32 * CONTEXT, 256), nn.GELU(),
                          nn.LayerNorm(256), nn.Dropout(0.1), nn.Linear(256, 256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    trainer = create_supervised_trainer(model, optimizer, loss_fn, gradient_accumulation_steps=ACCUMULATION)
    evaluator = create_supervised_evaluator(model, metrics={"loss": Loss(loss_fn)})
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run(DataLoader(HELD_OUT, batch_size=256)))
    loader = DataLoader(TRAIN, batch_size=BATCH, shuffle=True)
    return model, optimizer, trainer, evaluator, loader


State = tuple[dict[str, torch.Tensor], torch.Tensor]


def at_first_iteration(trainer: Engine, model: nn.Module) -> list[State]:
    """The weights and the RNG when the first real iteration starts (filled in during the run)."""
    seen: list[State] = []
    trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _: seen.append(
        ({k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state())))
    return seen


def compared(state: State, plain: State) -> str:
    weights = all(torch.equal(v, plain[0][k]) for k, v in state[0].items())
    rng = torch.equal(state[1], plain[1])
    return (f"first real iteration: weights {'as without it' if weights else 'CHANGED'}, "
            f"RNG {'as without it' if rng else 'moved'}")


def count_iterations(trainer: Engine) -> list[int]:
    fired = [0]
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: fired.__setitem__(0, fired[0] + 1))
    return fired


def plain_start() -> State:
    """Where the first iteration of a run without any finder starts."""
    model, _, trainer, _, loader = build()
    seen = at_first_iteration(trainer, model)
    trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda e: e.terminate())
    trainer.run(loader, max_epochs=EPOCHS)
    return seen[0]


def fastai_side(plain: State) -> float:
    """Ignite's own finder: it runs the trainer itself (its handlers fire), restores model and optimizer, and the
    training run follows."""
    model, optimizer, trainer, _, loader = build()
    fired = count_iterations(trainer)
    finder = FastaiLRFinder()
    with finder.attach(trainer, to_save={"model": model, "optimizer": optimizer}, start_lr=1e-7, end_lr=10.0,
                       num_iter=100 * ACCUMULATION) as sweeping:
        sweeping.run(loader)
    during = fired[0]
    suggestion = float(finder.lr_suggestion())
    seen = at_first_iteration(trainer, model)
    trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda e: e.terminate())
    trainer.run(loader, max_epochs=EPOCHS)
    print(f"FastaiLRFinder: suggests {suggestion:.2e}; {compared(seen[0], plain)}; {during} ITERATION_COMPLETED "
          "events fired during its sweep")
    return suggestion


def main() -> None:
    torch.set_num_threads(1)  # a tiny model: one thread is fastest, and never oversubscribes a shared CPU
    plain = plain_start()
    fastai_lr = fastai_side(plain)

    model, optimizer, trainer, evaluator, loader = build()
    tune = AutoLRHandler(model, optimizer, schedule="auto", num_steps=100, progress=False)  # autolr
    tune.attach(trainer, evaluator)  # autolr: accumulation read from create_supervised_trainer
    checkpoint_dir = tempfile.mkdtemp(prefix="autolr-ignite-")
    to_save = {"model": model, "optimizer": optimizer, "trainer": trainer, "autolr": tune}  # autolr: "autolr"
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=1), Checkpoint(to_save, DiskSaver(checkpoint_dir)))
    fired = count_iterations(trainer)
    seen = at_first_iteration(trainer, model)
    lrs: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, *_: None if range_test_running() else lrs.append(
        opt.param_groups[0]["lr"]))  # the LR every real optimizer step runs at (not the sweep's)
    trace: list[tuple[int, float, float]] = []  # (optimizer step, lr it ran at, loss)

    @trainer.on(Events.ITERATION_COMPLETED(every=ACCUMULATION))
    def record(engine: Engine) -> None:
        trace.append((tune.tuner.step, lrs[-1], engine.state.output))

    @trainer.on(Events.EPOCH_COMPLETED)
    def report(engine: Engine) -> None:
        print(f"epoch {engine.state.epoch}: held-out loss {evaluator.state.metrics['loss']:.3f}, "
              f"optimizer steps {tune.tuner.step}, lr {optimizer.param_groups[0]['lr']:.2e}")

    trainer.run(loader, max_epochs=EPOCHS)
    print(f"AutoLRHandler: suggests {tune.result.suggestion.lr:.2e} (FastaiLRFinder {fastai_lr:.2e}); "
          f"{compared(seen[0], plain)} (the weight-decay split aside); "
          f"{fired[0] - trainer.state.iteration} events fired during its sweep")
    print(tune.tuner.summary())
    print("LR trace (every 15th optimizer step):")
    print("  step        lr      loss")
    for step, lr, loss in [*trace[::15], trace[-1]]:
        print(f"  {step:4d}  {lr:.2e}  {loss:.3f}")

    # resume from the epoch-1 checkpoint in fresh objects, as a new process would
    model, optimizer, trainer, evaluator, loader = build()
    resumed = AutoLRHandler(model, optimizer, schedule="auto", num_steps=100, progress=False).attach(
        trainer, evaluator)
    saved = sorted(Path(checkpoint_dir).glob("*.pt"))[-1]
    Checkpoint.load_objects(  # any order: here the optimizer is loaded before the handler
        to_load={"optimizer": optimizer, "model": model, "trainer": trainer, "autolr": resumed}, checkpoint=str(saved))
    resumed_lrs: list[float] = []
    optimizer.register_step_pre_hook(lambda opt, *_: resumed_lrs.append(opt.param_groups[0]["lr"]))
    trainer.run(loader, max_epochs=EPOCHS)
    done = len(lrs) - len(resumed_lrs)
    assert resumed.tuner.step == tune.tuner.step and resumed_lrs == lrs[done:], "the resumed LR trajectory differs"
    print(f"resumed from {saved.name} at optimizer step {done}: no new range test, the same LR trajectory "
          f"({len(resumed_lrs)} steps)")


if __name__ == "__main__":
    main()
