"""`import autolr` stays light: heavy optional packages are imported only where used."""

from __future__ import annotations

import subprocess
import sys


def test_import_autolr_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, autolr, autolr.integrations; "
        "heavy = [m for m in ('wandb', 'scipy', 'matplotlib', 'lightning', 'transformers', 'ignite', 'optuna', "
        "'ray') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_first_lr_find_imports_nothing_heavy() -> None:
    """The first lr_find call's fixed cost: its analysis needs neither scipy (about 1.2 s to import) nor
    numpy.ma (about 40 ms; np.median and np.percentile import it on their first call)."""
    code = (
        "import sys, torch, autolr; torch.manual_seed(0); m = torch.nn.Linear(4, 1); "
        "opt = torch.optim.SGD(m.parameters(), lr=0.1); data = [(torch.randn(16, 4), torch.randn(16, 1))] * 4; "
        "before = set(sys.modules); "
        "autolr.lr_find(m, opt, data, loss_fn=torch.nn.MSELoss(), num_steps=40, progress=False); "
        "new = set(sys.modules) - before; "
        "print(','.join(sorted(n for n in new if n.split('.')[0] in ('scipy', 'matplotlib', 'wandb') "
        "or n.startswith('numpy.ma'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_public_api_is_curated() -> None:
    import autolr

    assert set(autolr.__all__) >= {"lr_find", "AutoLR", "LRFindResult", "Snapshot", "Suggestion", "Curve"}
    for name in autolr.__all__:
        assert hasattr(autolr, name), name
