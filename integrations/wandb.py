"""Weights & Biases reporter: the range test, the decisions and the training LRs, logged under ``autolr/``.

The reporter reuses the active run (``wandb.run``, or the ``run`` you pass) and otherwise starts its own. With
no API key and no ``WANDB_MODE`` it starts the run **offline** rather than prompting or hanging, and logs the
``wandb sync <run dir>`` command that uploads it later. Only rank 0 logs.

It never disturbs your step counter. In your own run it never passes ``step=`` and never commits a row: the
range test becomes one ``commit=False`` row (curve table, line plot, figure, decisions table) plus config,
summary and an artifact, and training metrics join your next row with their own x-axis ``autolr/train_step``
(the losses every ``log_every`` calls; the learning rate and weight decay of every group at least every
``lr_interval`` seconds, so every row you commit carries them and the schedule can be seen). In a run it
started itself it also logs every range-test point (x-axis ``autolr/range_test/step``) and every training
row, so start your run before the reporter logs if you will log with ``step=`` yourself. Any W&B failure becomes one
:class:`~autolr.errors.AutoLRWarning` and the reporter goes quiet; training goes on. With ``local_dir`` the
same report is also written to disk (HTML, PNG, JSON), whatever happens to W&B.

wandb is an optional extra (``pip install "torch-autolr[wandb]"``). Without it, building the reporter (or
``AutoLR(..., wandb=True)``) warns once with that command and logging to W&B is off; training goes on, and a
``local_dir`` report is still written.

Example:
    >>> from autolr.integrations.wandb import WandbReporter
    >>> reporter = WandbReporter(project="my-project", local_dir="lr_report")          # doctest: +SKIP
    >>> autolr.lr_find(model, opt, loader, loss_fn=loss_fn, reporters=[reporter])  # doctest: +SKIP
    >>> reporter.close()  # flushes; finishes the run only if the reporter started it  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import netrc
import os
import shlex
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from autolr.distributed import is_rank_zero
from autolr.errors import AutoLRWarning, ConfigurationError
from autolr.local_report import LocalReportReporter
from autolr.report import Decision, Reporter

if TYPE_CHECKING:
    from autolr.result import LRFindResult

__all__ = ["WandbReporter"]

logger = logging.getLogger("autolr")

_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")
_RT = "autolr/range_test"
_TRAIN_STEP = "autolr/train_step"
_STICKY = ("autolr/lr/", "autolr/weight_decay/")  # values that hold between steps: sent on every owner's row
_CURVE_COLUMNS = ["lr", "log10_lr", "loss", "smoothed_loss"]
_DECISION_COLUMNS = ["decision", "value", "alternatives", "reason", "evidence", "step"]
_INSTALL = 'pip install "torch-autolr[wandb]"'  # wandb is an extra: the core never needs it


def _wandb_missing() -> bool:
    """True when ``import wandb`` is bound to fail (not installed, or blocked with ``sys.modules["wandb"] = None``);
    checked without importing it."""
    if "wandb" in sys.modules:
        return sys.modules["wandb"] is None
    try:
        return importlib.util.find_spec("wandb") is None
    except (ImportError, ValueError):  # a broken installation: let the real import report it
        return False


def _credentials_configured() -> bool:
    """True when W&B has an API key: in the environment, or in the netrc file ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = os.environ.get("NETRC") or str(Path.home() / ("_netrc" if os.name == "nt" else ".netrc"))
    try:
        hosts = netrc.netrc(path).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    base = urlsplit(os.environ.get("WANDB_BASE_URL", "")).netloc
    return any("wandb" in h or "coreweave" in h or (base and h == base) for h in hosts)


def _jsonable(value: Any) -> Any:
    """JSON-ready copy: non-finite floats become None, numpy/torch scalars plain numbers, the rest str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if callable(getattr(value, "item", None)):
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _text(value: Any) -> str:
    """One table cell: text, so that a column never mixes types."""
    if value is None or isinstance(value, str):
        return value or ""
    return json.dumps(_jsonable(value))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _save_figure(result: LRFindResult, path: Path) -> bool:
    """Save the range-test plot as a PNG; False (and no figure) when matplotlib is missing or fails."""
    try:
        from autolr.plotting import new_figure, plot_curve

        fig = new_figure()
        plot_curve(result, ax=fig.add_subplot())
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    except Exception as exc:  # the figure is optional; the table and the plot carry the same data
        logger.debug("autolr: no range-test figure for W&B: %r", exc)
        return False
    return True


class WandbReporter(Reporter):
    """Logs range tests, decisions and training metrics to Weights & Biases (see the module docstring).

    Args:
        project: project for a run the reporter starts (ignored when a run is active).
        name: display name for a run the reporter starts.
        tags: tags for a run the reporter starts.
        mode: ``"online"``, ``"offline"``, ``"disabled"``...; by default W&B decides (``WANDB_MODE``), and
            with neither that nor an API key the run is offline.
        dir: directory for a run the reporter starts (``WANDB_DIR`` otherwise).
        run: a run to log into instead of ``wandb.run``; the reporter never finishes it.
        log_every: training-metric calls buffered before they are sent.
        lr_interval: in a run somebody else steps, the latest learning rates and weight decays (every group)
            join the owner's next row at least this often, in seconds (each send costs about 0.1 ms), so every
            row committed at most this often carries them. Loggers that commit each row as they log it
            (Lightning's ``WandbLogger``, Hugging Face's ``WandbCallback``, ``run.log(metrics)``) get the LR each
            optimizer step ran at on that step's row. With ``run.log(metrics, step=s)`` W&B keeps row ``s`` open
            until a later step arrives, so it ends up with the next optimizer step's values; the
            ``autolr/train_step`` column on the row says which step they belong to.
        local_dir: also write ``report.html``, ``curve.png`` and ``result.json`` here.

    Attributes:
        owns_run: True when the reporter started the run (and will finish it on :meth:`close`).
    """

    def __init__(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        run: Any = None,
        log_every: int = 50,
        lr_interval: float = 0.1,
        local_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if mode is not None and mode not in _MODES:
            raise ConfigurationError(f"mode must be one of {_MODES} or None (let W&B decide), got {mode!r}")
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ConfigurationError(f"log_every must be an int >= 1 (calls per batch), got {log_every!r}")
        if isinstance(lr_interval, bool) or not isinstance(lr_interval, (int, float)) or not lr_interval >= 0:
            raise ConfigurationError(f"lr_interval must be a number of seconds >= 0, got {lr_interval!r}")
        init = {"project": project, "name": name, "tags": list(tags) or None, "dir": dir}
        self._init_kwargs = {k: (str(v) if k == "dir" else v) for k, v in init.items() if v is not None}
        self._mode = mode
        self._run = run
        self.log_every = log_every
        self.lr_interval = float(lr_interval)
        self._lr_sent = -math.inf
        self.owns_run = False
        self._off = False
        self._local = LocalReportReporter(local_dir) if local_dir is not None else None
        self._result: LRFindResult | None = None
        self._decisions: list[Decision] = []
        self._rows: list[dict[str, float]] = []
        self._defined: set[str] = set()
        self._range_test_points = 0
        if run is None and is_rank_zero() and _wandb_missing():
            self._not_installed()  # say so now, not after the range test

    # -- public properties -----------------------------------------------------------------------------
    @property
    def run(self) -> Any:
        """The W&B run being logged to, or None (not started yet, not rank 0, or W&B failed)."""
        return None if self._off else self._run

    @property
    def sync_command(self) -> str | None:
        """``wandb sync <run dir>`` for an offline run (the command that uploads it), else None."""
        run = self.run
        if run is None or not getattr(run, "offline", False) or getattr(run, "disabled", False):
            return None
        return f"wandb sync {shlex.quote(str(run.settings.sync_dir))}"

    # -- Reporter events -------------------------------------------------------------------------------
    def range_test_end(self, result: LRFindResult) -> None:
        if self._local is not None:
            self._local.range_test_end(result)
        self._result = result
        self._guarded("logging the range test", self._log_range_test, result)

    def decisions(self, decisions: Sequence[Decision]) -> None:
        if self._local is not None:
            self._local.decisions(decisions)
        self._decisions.extend(decisions)
        self._guarded("logging decisions", self._log_decisions, list(decisions))

    def training_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._off:
            return
        row = {_TRAIN_STEP: int(step)}
        for key, value in metrics.items():
            try:
                row[key if key.startswith("autolr/") else f"autolr/{key}"] = float(value)
            except (TypeError, ValueError):
                logger.debug("autolr: training metric %r is not a number (%r); not logged", key, value)
        self._rows.append(row)
        if len(self._rows) >= self.log_every:
            self._guarded("logging training metrics", self._flush)
        elif not self.owns_run and self._run is not None and any(k.startswith(_STICKY) for k in row):
            now = time.monotonic()
            if now - self._lr_sent >= self.lr_interval:
                self._lr_sent = now
                sticky = {k: v for k, v in row.items() if k.startswith(_STICKY) or k == _TRAIN_STEP}
                self._guarded("logging learning rates", self._send_partial, sticky)

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        if self._rows:
            self._guarded("logging training metrics", self._flush)
        if self.owns_run and self._run is not None:
            try:
                self._run.finish()
            except Exception as exc:
                self._fail("finishing the W&B run", exc)
            self._run, self.owns_run = None, False

    # -- internals -------------------------------------------------------------------------------------
    def _guarded(self, what: str, fn: Any, *args: Any) -> None:
        run = self._ensure_run()
        if run is None:
            return
        try:
            fn(run, *args)
        except Exception as exc:
            self._fail(what, exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        if self._off:
            return
        self._off, self._rows = True, []
        where = f"; the local report is in {self._local.directory}" if self._local is not None else ""
        message = f"autolr: W&B {what} failed, W&B logging is off from here on{where} ({exc!r})"
        warnings.warn(message, AutoLRWarning, stacklevel=4)

    def _not_installed(self) -> None:
        if self._off:
            return
        self._off, self._rows = True, []
        where = f" (the local report goes to {self._local.directory})" if self._local is not None else ""
        message = f"autolr: wandb is not installed, so W&B logging is off{where}; to log to W&B: {_INSTALL}"
        warnings.warn(message, AutoLRWarning, stacklevel=3)

    def _ensure_run(self) -> Any:
        if self._off:
            return None
        if not is_rank_zero():
            self._off = True  # quietly: other ranks never log
            return None
        if self._run is not None:
            return self._run
        try:
            import wandb
        except ImportError as exc:
            if _wandb_missing() or getattr(exc, "name", None) == "wandb":
                self._not_installed()
            else:  # installed but broken (a missing dependency of its own)
                self._fail(f"import ({_INSTALL})", exc)
            return None
        if wandb.run is not None:
            self._run = wandb.run
        else:
            kwargs, auto_offline = dict(self._init_kwargs), False
            if self._mode is not None:
                kwargs["mode"] = self._mode
            elif not os.environ.get("WANDB_MODE") and not _credentials_configured():
                kwargs["mode"], auto_offline = "offline", True
            try:
                self._run, self.owns_run = wandb.init(**kwargs), True
            except Exception as exc:
                self._fail("init", exc)
                return None
            self._announce(auto_offline)
        return self._run

    def _announce(self, auto_offline: bool) -> None:
        command = self.sync_command
        if command is None:
            return
        why = "no W&B API key was found, so " if auto_offline else ""
        level = logging.WARNING if auto_offline else logging.INFO
        logger.log(level, "autolr: %sthe W&B run is offline; upload it later with: %s", why, command)

    def _define(self, run: Any, name: str, step_metric: str | None = None) -> None:
        if name not in self._defined:
            self._defined.add(name)
            if step_metric is None:
                run.define_metric(name, hidden=True)
            else:
                run.define_metric(name, step_metric=step_metric)

    def _config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._result is not None:
            c, s = self._result.curve, self._result.suggestion
            out.update(suggested_lr=s.lr, method=s.method, confidence=s.confidence, reason=s.reason)
            out.update(alternatives=dict(s.alternatives), evidence=dict(s.evidence), stop_reason=c.stop_reason,
                       finetune=s.finetune)
            out.update(points=len(c), settings=dict(self._result.settings))
        plan = {d.name: {k: v for k, v in d.to_dict().items() if k != "name"} for d in self._decisions}
        out["decisions"] = {k: v for k, v in plan.items() if v["step"] is None}
        return _jsonable(out)

    def _decisions_table(self, wandb: Any) -> Any:
        cells = [(d.name, d.value, dict(d.alternatives), d.reason, dict(d.evidence), d.step) for d in self._decisions]
        return wandb.Table(columns=_DECISION_COLUMNS, data=[[_text(v) for v in row] for row in cells])

    def _log_range_test(self, run: Any, result: LRFindResult) -> None:
        import wandb

        c, s = result.curve, result.suggestion
        points = [(float(x), _finite(y), _finite(z)) for x, y, z in zip(c.lrs, c.losses, c.smoothed, strict=True)]
        if self.owns_run:  # step-wise rows on their own x-axis: only in a run nobody else steps
            self._define(run, f"{_RT}/step")
            for key in ("lr", "loss", "smoothed_loss"):
                self._define(run, f"{_RT}/{key}", step_metric=f"{_RT}/step")
            for i, (lr, loss, smooth) in enumerate(points, start=self._range_test_points):
                row = {f"{_RT}/step": i, f"{_RT}/lr": lr, f"{_RT}/loss": loss, f"{_RT}/smoothed_loss": smooth}
                run.log({k: v for k, v in row.items() if v is not None})
            self._range_test_points += len(points)
        curve = wandb.Table(
            columns=_CURVE_COLUMNS, data=[[x, math.log10(x) if x > 0 else None, y, z] for x, y, z in points]
        )
        payload: dict[str, Any] = {
            f"{_RT}/curve": curve,
            f"{_RT}/loss_vs_log10_lr": wandb.plot.line(curve, "log10_lr", "loss", title="LR range test"),
            "autolr/decisions": self._decisions_table(wandb),
        }
        with tempfile.TemporaryDirectory(prefix="autolr-") as tmp:
            png = Path(tmp) / "curve.png"
            if _save_figure(result, png):
                payload[f"{_RT}/plot"] = wandb.Image(str(png), caption="LR range test")
            run.log(payload, commit=False)
            run.config.update({"autolr": self._config()}, allow_val_change=True)
            summary = {"suggested_lr": s.lr, "confidence": s.confidence, "method": s.method, "reason": s.reason}
            run.summary.update({f"autolr/{k}": _jsonable(v) for k, v in summary.items()})
            run.summary["autolr/stop_reason"] = c.stop_reason
            metadata = {"suggested_lr": s.lr, "method": s.method, "stop_reason": c.stop_reason}
            artifact = wandb.Artifact(f"autolr-range-test-{run.id}", "autolr-range-test", metadata=_jsonable(metadata))
            artifact.add_file(str(result.save(Path(tmp) / "result.json")), name="result.json")
            run.log_artifact(artifact)

    def _log_decisions(self, run: Any, decisions: list[Decision]) -> None:
        import wandb

        run.config.update({"autolr": self._config()}, allow_val_change=True)
        for d in decisions:
            run.summary[f"autolr/decision/{d.name}"] = _jsonable(d.value)
            run.summary[f"autolr/decision/{d.name}/reason"] = d.reason
            if d.step is not None:
                run.summary[f"autolr/decision/{d.name}/step"] = d.step
        run.log({"autolr/decisions": self._decisions_table(wandb)}, commit=False)

    def _send_partial(self, run: Any, row: dict[str, float]) -> None:
        """Join ``row`` to the owner's next row (never commits, never passes ``step=``)."""
        self._define_rows(run, [row])
        run.log(row, commit=False)

    def _define_rows(self, run: Any, rows: list[dict[str, float]]) -> None:
        self._define(run, _TRAIN_STEP)
        for key in {k for row in rows for k in row} - {_TRAIN_STEP}:
            self._define(run, key, step_metric=_TRAIN_STEP)

    def _flush(self, run: Any) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        self._define_rows(run, rows)
        if self.owns_run:
            for row in rows:
                run.log(row)
        else:  # the user's run: join their next row, never advance their step
            run.log(rows[-1], commit=False)
