"""wandb is an optional extra (``torch-autolr[wandb]``): without it the core works and W&B logging is off
with one warning that says how to install it. Runs with or without wandb installed (a subprocess blocks it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

INSTALL_HINT = 'pip install "torch-autolr[wandb]"'
ROOT = Path(__file__).resolve().parents[1]


def _run_without_wandb(script: str, cwd: Path, *args: str) -> list[list[str]]:
    """Run ``script`` in a fresh interpreter where ``import wandb`` fails; return the warnings it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    prelude = 'import sys\nsys.modules["wandb"] = None  # import wandb now raises ImportError, as when not installed\n'
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script), *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_wandb_not_installed_warns_once_and_writes_local_report(tmp_path: Path) -> None:
    script = """
        import json, sys, warnings
        import numpy as np
        from autolr import Curve, Decision, LRFindResult, Suggestion
        from autolr.integrations.wandb import WandbReporter

        result = LRFindResult(Curve(np.geomspace(1e-5, 1, 20), np.linspace(2, 1, 20)),
                              Suggestion(3e-3, "steepest", 0.8, "steepest descent"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reporter = WandbReporter(local_dir=sys.argv[1], log_every=2)
            at_construction = len(caught)
            reporter.range_test_end(result)
            reporter.decisions([Decision("lr", 3e-3, "the suggestion")])
            for step in range(5):
                reporter.training_metrics(step, {"lr/group0": 0.1})
            reporter.close()
        print(json.dumps([[w.category.__name__, str(w.message), at_construction] for w in caught]))
    """
    caught = _run_without_wandb(script, tmp_path, str(tmp_path / "report"))
    assert len(caught) == 1 and caught[0][0] == "AutoLRWarning"
    assert caught[0][2] == 1  # said when the reporter is built, not after a range test
    assert INSTALL_HINT in caught[0][1] and str(tmp_path / "report") in caught[0][1]
    assert "3.00e-03" in (tmp_path / "report" / "report.html").read_text()
    assert (tmp_path / "report" / "result.json").exists()
    assert not (tmp_path / "wandb").exists()


def test_autolr_with_wandb_true_but_no_wandb_warns_once_and_trains(tmp_path: Path) -> None:
    script = """
        import json, warnings
        import torch
        from torch import nn
        import autolr

        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        data = [(torch.randn(16, 8), torch.randint(0, 2, (16,))) for _ in range(4)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tuner = autolr.AutoLR(model, opt, schedule="onecycle", weight_decay=None, progress=False, wandb=True)
            tuner.lr_find(data, nn.CrossEntropyLoss(), total_steps=8, num_steps=20)
            for x, y in data * 2:
                opt.zero_grad(); loss = nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
                tuner.observe(loss)
            tuner.close()
        assert tuner.step == 8, tuner.step
        ours = [w for w in caught if issubclass(w.category, autolr.AutoLRWarning) and "wandb" in str(w.message)]
        print(json.dumps([[w.category.__name__, str(w.message)] for w in ours]))
    """
    caught = _run_without_wandb(script, tmp_path)
    assert len(caught) == 1 and INSTALL_HINT in caught[0][1], caught
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half-made wandb/ directory, no stray files


def test_wandb_is_an_extra_not_a_core_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]]
    assert "wandb" not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("wandb") for d in extras["wandb"])
    assert any(d.startswith("wandb") for d in extras["dev"])  # CI (pip install -e ".[dev]") still tests it
