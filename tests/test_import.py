"""`import autolr` stays light: heavy optional packages are imported only where used."""

from __future__ import annotations

import subprocess
import sys


def test_import_autolr_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, autolr, autolr.integrations; "
        "heavy = [m for m in ('wandb', 'scipy', 'matplotlib', 'lightning', 'transformers', 'ignite', 'optuna') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""


def test_public_api_is_curated() -> None:
    import autolr

    assert set(autolr.__all__) >= {"lr_find", "AutoLR", "LRFindResult", "Snapshot", "Suggestion", "Curve"}
    for name in autolr.__all__:
        assert hasattr(autolr, name), name
