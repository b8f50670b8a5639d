"""A report on local disk: ``report.html`` (self-contained), ``curve.png`` and ``result.json``.

Needs no account and no network; matplotlib is optional (without it there is no PNG and the HTML says so).
:class:`LocalReportReporter` writes the same folder from inside :func:`autolr.lr_find` or a tuner.

Example:
    >>> import numpy as np, tempfile
    >>> from autolr import Curve, LRFindResult, Suggestion
    >>> result = LRFindResult(Curve(np.geomspace(1e-5, 1, 40), np.linspace(2, 1, 40)),
    ...                       Suggestion(1e-3, "steepest", 0.8, "steepest descent"))
    >>> write_report(result, tempfile.mkdtemp()).name
    'report.html'
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AutoLRWarning
from .report import Decision, Reporter, format_lr

if TYPE_CHECKING:
    from .result import LRFindResult

__all__ = ["LocalReportReporter", "write_report"]

logger = logging.getLogger("autolr")

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;"
    "text-align:left;vertical-align:top}th{background:#f4f4f4}.chosen{font-weight:bold}.muted{color:#777}"
)


def _fmt(value: Any) -> str:
    """A compact, human-readable rendering of a decision value (not escaped)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], chosen: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="chosen"' if i == chosen else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    if not body:
        return '<p class="muted">(none)</p>'
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _render_png(result: LRFindResult, path: Path) -> str | None:
    """Write the curve PNG; returns why not when matplotlib is unavailable."""
    from .plotting import new_figure, plot_curve

    try:
        fig = new_figure()
    except ImportError as exc:
        return str(exc)
    plot_curve(result, ax=fig.add_subplot())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return None


def _result_section(result: LRFindResult, png: Path | None, png_missing: str | None) -> list[str]:
    c, s = result.curve, result.suggestion
    parts = []
    if s.lr is None:
        parts.append(f"<p><b>No learning rate suggested.</b> {html.escape(s.reason)}</p>")
    else:
        parts.append(
            f"<p>Suggested learning rate <b>{html.escape(format_lr(s.lr))}</b> ({html.escape(s.method)}, "
            f"confidence {s.confidence:.2f}): {html.escape(s.reason)}</p>"
        )
    lr_range = f"{format_lr(c.lrs[0])} to {format_lr(c.lrs[-1])}" if len(c) else "no points"
    parts.append(
        f"<p>Stop reason: <b>{html.escape(c.stop_reason)}</b> ({html.escape(c.stop_description)}); "
        f"{len(c)} points, lr {html.escape(lr_range)}, {c.wall_time:.1f} s.</p>"
    )
    if png is not None:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<p><img alt="loss against learning rate" src="data:image/png;base64,{data}"></p>')
    else:
        parts.append(f'<p class="muted">No curve image: {html.escape(png_missing or "")}</p>')
    strategies = [(s.method, format_lr(s.lr), "chosen")]
    strategies += [(name, format_lr(v), "") for name, v in s.alternatives.items() if name != s.method]
    parts.append("<h2>Suggestion and alternatives</h2>")
    parts.append(_table(["strategy", "learning rate", ""], strategies, chosen=0))
    parts.append("<h2>Evidence</h2>")
    parts.append(_table(["quantity", "value"], [(k, _fmt(v)) for k, v in s.evidence.items()]))
    return parts


def write_report(
    result: LRFindResult | None, directory: str | os.PathLike[str], decisions: Iterable[Decision] = ()
) -> Path:
    """Write ``report.html``, ``curve.png`` (with matplotlib) and ``result.json`` into ``directory``.

    Args:
        result: the range-test result (``None`` writes a decisions-only report).
        directory: the folder to write into (created if missing; files in it are overwritten).
        decisions: decisions to list (plan, guard interventions).

    Returns:
        The path of ``report.html``.

    Example:
        >>> write_report(result, "lr_report", decisions=plan.decisions)   # doctest: +SKIP
        PosixPath('lr_report/report.html')
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    decisions = list(decisions)
    body = ["<h1>autolr report</h1>"]
    if result is not None:
        result.save(directory / "result.json")
        png: Path | None = directory / "curve.png"
        missing = _render_png(result, png)
        if missing is not None:
            png = None
        body += _result_section(result, png, missing)
    body.append("<h2>Decisions</h2>")
    rows = [
        (
            d.name,
            _fmt(d.value),
            _fmt(d.alternatives),
            d.reason,
            _fmt(d.evidence),
            d.step if d.step is not None else "",
        )
        for d in decisions
    ]
    body.append(_table(["decision", "value", "alternatives", "reason", "evidence", "step"], rows))
    if result is not None and result.settings:
        body.append("<h2>Settings</h2>")
        body.append(_table(["setting", "value"], [(k, _fmt(v)) for k, v in result.settings.items()]))
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>autolr report</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


class LocalReportReporter(Reporter):
    """Collects the range test and the decisions, and writes a local report folder.

    The folder is written after each range test and again on :meth:`close` (with every decision seen).
    Errors never reach training: the first one becomes an :class:`~autolr.errors.AutoLRWarning`.

    Example:
        >>> reporter = LocalReportReporter("runs/lr_report")                   # doctest: +SKIP
        >>> autolr.lr_find(model, opt, loader, loss_fn=loss_fn, reporters=[reporter])  # doctest: +SKIP
        >>> reporter.close()                                                    # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.result: LRFindResult | None = None
        self.collected: list[Decision] = []
        self.path: Path | None = None
        self._warned = False

    def range_test_end(self, result: LRFindResult) -> None:
        self.result = result
        self._write()

    def decisions(self, decisions: Sequence[Decision]) -> None:
        self.collected.extend(decisions)

    def close(self) -> None:
        if self.result is not None or self.collected:
            self._write()

    def _write(self) -> None:
        try:
            self.path = write_report(self.result, self.directory, self.collected)
            logger.debug("autolr report written to %s", self.path)
        except Exception as exc:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"autolr could not write the report to {self.directory}: {exc}", AutoLRWarning, 3
                )
