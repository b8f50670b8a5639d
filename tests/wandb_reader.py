"""Read an offline W&B run back from disk, for tests.

Offline runs (wandb 0.31) write no ``wandb-summary.json`` or ``config.yaml``: everything logged lives in one
binary transaction log, ``run-<id>.wandb``, plus media files under ``files/``. The log is a 7-byte header
(``:W&B``, a u16 magic, a u8 version) followed by LevelDB-log records in 32 KiB blocks; each logical record
is a protobuf ``wandb_internal_pb2.Record``. ``run.finish()`` can return before the log is flushed, so
:func:`read_run` polls until the exit record appears.

Example:
    >>> data = read_run(find_run_dir(tmp_path / "wandb"))          # doctest: +SKIP
    >>> data.summary["autolr/suggested_lr"], data.exit_code        # doctest: +SKIP
    (0.003, 0)
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str | Path) -> Iterator[Any]:
    """Yield every complete ``Record`` in a ``.wandb`` file; stops quietly at a torn or unwritten tail."""
    from wandb.proto import wandb_internal_pb2 as pb

    buf = Path(path).read_bytes()
    if len(buf) < _HEADER:
        return
    if buf[:4] != b":W&B":
        raise ValueError(f"{path} is not a .wandb transaction log")
    i, part = _HEADER, b""
    while i + 7 <= len(buf):
        left_in_block = _BLOCK - i % _BLOCK
        if left_in_block < 7:  # block trailer padding
            i += left_in_block
            continue
        crc, length, kind = struct.unpack("<IHB", buf[i : i + 7])
        data = buf[i + 7 : i + 7 + length]
        if kind == 0 or len(data) < length or zlib.crc32(data, zlib.crc32(bytes([kind]))) != crc:
            return
        i += 7 + length
        part += data
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(part)
            part = b""
            yield record


@dataclass
class RunData:
    """Everything read back from one run directory."""

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    exit_code: int | None = None

    def table(self, ref: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a logged ``wandb.Table``, given the ref dict found in history or summary."""
        return read_table(self.run_dir, ref)

    def values(self, key: str) -> list[Any]:
        """Every history value logged under ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def _put(target: dict[str, Any], item: Any, value: Any) -> None:
    *head, last = list(item.nested_key) or [item.key]
    for k in head:
        target = target.setdefault(k, {})
    old = target.get(last)
    target[last] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value


def _history_value(item: Any) -> Any:
    kind = item.WhichOneof("value")
    if kind in (None, "value_json"):
        return json.loads(item.value_json)
    if kind == "none":
        return None
    if kind == "json":
        return json.loads(item.json)
    return getattr(item, kind)


def _parse(run_dir: Path, log: Path) -> RunData:
    out = RunData(run_dir=run_dir)
    for r in records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.tags = tuple(r.run.tags)
            for it in r.run.config.update:
                _put(out.config, it, json.loads(it.value_json))
        elif kind == "config":
            for it in r.config.update:
                _put(out.config, it, json.loads(it.value_json))
        elif kind == "summary":
            for it in r.summary.update:
                _put(out.summary, it, json.loads(it.value_json))
            for it in r.summary.remove:
                out.summary.pop(it.key, None)
        elif kind == "history":
            row: dict[str, Any] = {}
            for it in r.history.item:
                _put(row, it, _history_value(it))
            out.history.append(row)
        elif kind == "metric":
            m = r.metric
            out.metrics[m.name or m.glob_name] = {"step_metric": m.step_metric, "hidden": m.options.hidden}
        elif kind == "artifact":
            a = r.artifact
            out.artifacts.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "metadata": json.loads(a.metadata) if a.metadata else {},
                    "files": {e.path: e.local_path for e in a.manifest.contents},
                }
            )
        elif kind == "exit":
            out.exit_code = r.exit.exit_code
    return out


def find_run_dir(wandb_dir: str | Path) -> Path:
    """The single run directory under ``wandb_dir`` (the ``wandb/`` folder inside ``WANDB_DIR``)."""
    runs = sorted(p for p in Path(wandb_dir).glob("*run-*") if p.is_dir())
    if len(runs) != 1:
        raise AssertionError(f"expected exactly one run under {wandb_dir}, found {[p.name for p in runs]}")
    return runs[0]


def read_run(run_dir: str | Path, timeout: float = 10.0) -> RunData:
    """Parse a run directory, polling until the exit record is on disk (or ``timeout`` seconds pass)."""
    run_dir = Path(run_dir)
    (log,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        data = _parse(run_dir, log)
        if data.exit_code is not None or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def read_table(run_dir: str | Path, ref: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (column -> value) of a logged table; ``ref`` is its ``{"_type": "table-file", ...}`` dict."""
    table = json.loads((Path(run_dir) / "files" / ref["path"]).read_text())
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
