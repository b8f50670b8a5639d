"""A custom Accelerate training loop, auto-tuned by adding a few lines (marked ``# autolr``).

Run it with::

    pip install "torch-autolr[accelerate]"
    python examples/accelerate_loop.py              # add --wandb to log into an offline W&B run

A small byte-level language model (an MLP over the previous 16 bytes) learns the Python documentation that
ships with the interpreter, in a loop written the Accelerate way: ``accelerator.prepare``, bf16 autocast,
``gradient_accumulation_steps=2`` with ``accelerator.accumulate``, ``accelerator.backward``, clipping only on
sync steps. ``AutoLR`` takes the prepared model and optimizer as they are and runs the range test through that
very step (``train_step=``), so the sweep measures the loop's precision, accumulation and clipping. The plan's
schedule then steps itself after every real optimizer step. The tuner is checkpointed with Accelerate's own
``register_for_checkpointing`` / ``save_state``; the script resumes from that checkpoint in a fresh set of
objects and checks that the LR trajectory goes on unchanged. About 20 s on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autolr  # autolr
from autolr.integrations.accelerate import tracker_reporters  # autolr

CONTEXT, EPOCHS, STEPS_PER_EPOCH = 16, 2, 60


def byte_windows(count: int, seed: int) -> TensorDataset:
    """(previous CONTEXT bytes, next byte) pairs from the Python docs that ship with the interpreter."""
    import pydoc_data.topics

    text = " ".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).encode("ascii", "ignore")
    ids = torch.tensor(list(text), dtype=torch.long)
    starts = torch.randint(0, len(ids) - CONTEXT - 1, (count,), generator=torch.Generator().manual_seed(seed))
    windows = torch.stack([ids[s:s + CONTEXT + 1] for s in starts.tolist()])
    return TensorDataset(windows[:, :-1], windows[:, -1])


def build(accelerator: Accelerator) -> tuple[nn.Module, torch.optim.Optimizer, autolr.AutoLR, DataLoader]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(256, 32), nn.Flatten(), nn.Linear(32 * CONTEXT, 256), nn.GELU(),
                          nn.LayerNorm(256), nn.Linear(256, 256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(byte_windows(64 * STEPS_PER_EPOCH * 2, seed=0), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    tuner = autolr.AutoLR(model, optimizer, schedule="auto", progress=False,  # autolr
                          reporters=tracker_reporters(accelerator))  # autolr: W&B through the accelerator's tracker
    accelerator.register_for_checkpointing(tuner)  # autolr: saved and loaded with accelerator.save_state
    return model, optimizer, tuner, loader


def make_step(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer):
    """The loop's training step, written the Accelerate way (nothing in it is for autolr)."""
    loss_fn = nn.CrossEntropyLoss()

    def train_step(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        with accelerator.accumulate(model):
            loss = loss_fn(model(inputs), targets)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        return loss

    return train_step


def new_accelerator(log_with: str | None) -> Accelerator:
    return Accelerator(cpu=True, mixed_precision="bf16", gradient_accumulation_steps=2, log_with=log_with)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wandb", action="store_true", help="log into an offline W&B run through the accelerator")
    options = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    accelerator = new_accelerator("wandb" if options.wandb else None)
    accelerator.init_trackers("autolr-accelerate-example")
    model, optimizer, tuner, loader = build(accelerator)
    train_step = make_step(accelerator, model, optimizer)

    plan = tuner.lr_find(loader, train_step=train_step, accumulation_steps=2, epochs=EPOCHS)  # autolr
    print(tuner.summary())

    checkpoint = tempfile.mkdtemp(prefix="autolr-accelerate-")
    lrs: list[float] = []
    for epoch in range(EPOCHS):
        total = 0.0
        for batch in loader:
            loss = train_step(batch)
            tuner.observe(loss)  # autolr: monitoring (and the divergence guard, if on)
            lrs.append(optimizer.param_groups[0]["lr"])
            total += loss.item()
        accelerator.log({"train/loss": total / len(loader)}, step=tuner.step)
        print(f"epoch {epoch}: mean loss {total / len(loader):.3f}, optimizer steps {tuner.step}, "
              f"lr {optimizer.param_groups[0]['lr']:.2e}")
        if epoch == 0:
            accelerator.save_state(checkpoint)  # the tuner is saved with the model and the optimizer
            saved_at, saved_step = len(lrs), tuner.step
    print(f"planned peak {plan.peak_lr:.2e}, highest lr used {max(lrs):.2e}")
    tuner.close()  # flushes the reporters; never finishes the tracker's run
    accelerator.end_training()

    # resume in fresh objects, as a new process would: no new range test, the same LR trajectory
    accelerator = new_accelerator(None)
    model, optimizer, resumed, loader = build(accelerator)
    accelerator.load_state(checkpoint)  # loads the optimizer first, then the tuner: any order works
    assert resumed.plan is not None and resumed.step == saved_step
    train_step = make_step(accelerator, model, optimizer)
    after = []
    for batch in loader:
        resumed.observe(train_step(batch))
        after.append(optimizer.param_groups[0]["lr"])
    assert after == lrs[saved_at:], "the resumed LR trajectory differs"
    print(f"resumed from {checkpoint} at optimizer step {saved_step}: no new range test, the same LR trajectory")


if __name__ == "__main__":
    main()
