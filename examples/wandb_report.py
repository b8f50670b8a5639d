"""Run an LR range test on a small model and report it to Weights & Biases (offline by default) and to disk.

    python examples/wandb_report.py                  # offline W&B run + local HTML report
    WANDB_MODE=online python examples/wandb_report.py   # if you have an API key and want it uploaded now

Without an API key or ``WANDB_MODE`` the reporter starts the run offline and never prompts. The script prints
where the run lives and the ``wandb sync`` command that uploads it later, plus the local report folder.
About 9 s on an idle 2-core CPU.

W&B is an optional extra: ``pip install -e ".[wandb]"`` (``.[dev]`` includes it). Without it the script warns
once with the install command, logs nothing to W&B and still writes the local report.
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autolr
from autolr.integrations.wandb import WandbReporter


def make_data(n: int = 2048, features: int = 20, classes: int = 4) -> TensorDataset:
    """A separable classification problem: labels from a fixed random linear map."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    y = (x @ torch.randn(features, classes, generator=g)).argmax(dim=1)
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="autolr-examples")
    parser.add_argument("--mode", default=None, help="W&B mode (default: WANDB_MODE, else offline without a key)")
    parser.add_argument("--report-dir", default="autolr_report", help="where the local HTML report goes")
    parser.add_argument("--num-steps", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    loader = DataLoader(make_data(), batch_size=64, shuffle=True)

    reporter = WandbReporter(project=args.project, name="lr-range-test", tags=("example",), mode=args.mode,
                             local_dir=args.report_dir)  # fmt: skip
    result = autolr.lr_find(
        model, optimizer, loader, loss_fn=nn.CrossEntropyLoss(), num_steps=args.num_steps, reporters=[reporter]
    )  # a progress bar (on a terminal), then the summary (suggestion, reason, alternatives) on stderr
    print(f"suggested learning rate: {result.lr}")

    run, sync = reporter.run, reporter.sync_command  # read these before close() finishes the run
    reporter.close()
    if run is None:
        print("W&B logging was off (see the warning above).")
    else:
        print(f"W&B run: {run.settings.sync_dir}")
        if sync:
            print(f"This run is offline. Upload it with:\n    {sync}")
    print(f"Local report: {os.path.join(args.report_dir, 'report.html')}")


if __name__ == "__main__":
    main()
