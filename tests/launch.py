"""Running a 2-process job in a subprocess for a test, so that nothing can hang: the job gets its own process
group, killed whole when it overruns, and each rank's record (``rank<r>.pt`` in the output folder) is read back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: Path, *args: str) -> list[str]:
    """The command that runs ``script`` on 2 local processes with torchrun, on a free port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
            f"--master_port={free_port()}", str(script), *args]


def run_ranks(command: list[str], out: Path, *, timeout: float, world_size: int = 2,
              env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run ``command`` (which writes ``out/rank<r>.pt`` per rank) and return every rank's record; fail the test
    on a timeout (after killing the whole process group), a missing record, a rank's error or a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **(env or {})}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)  # its own process group: a hang kills all of it
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the 2-process job did not finish within {timeout:.0f}s: hang?\n{output.decode()[-4000:]}")
    records = []
    for rank in range(world_size):
        path = out / f"rank{rank}.pt"
        assert path.exists(), f"rank {rank} wrote nothing (exit {process.returncode}):\n{output.decode()[-4000:]}"
        record = torch.load(path, weights_only=True)
        assert "error" not in record, f"rank {rank} failed:\n{record['error']}"
        records.append(record)
    assert process.returncode == 0, output.decode()[-4000:]
    return records
