"""Optuna: the range test inside a hyperparameter search.

Three helpers, one per way of combining the two:

* :func:`suggest_lr` (per trial): inside an objective, after the trial's model and optimizer are built, run a range
  test (state restored), set the suggested LR on the optimizer, and record it on the trial: the user attrs
  ``autolr/lr``, ``autolr/confidence`` and ``autolr/reason``, and the LR as the trial parameter ``"lr"`` (a
  single-valued ``suggest_float``), so ``best_params``, ``trials_dataframe()``, the plots and the dashboard's
  parameter views show it. A trial whose curve gives no LR, or one less confident than ``min_confidence``, is
  pruned (``optuna.TrialPruned`` with the reason) before any training. Cost: one range test per trial
  (``num_steps`` optimizer steps, 100 by default).
* :func:`narrow_lr_range` (per study): one range test up front, on a representative model; returns a
  ``(low, high)`` range for ``trial.suggest_float("lr", low, high, log=True)`` read off the curve (from where the
  loss starts to fall to below the divergence edge, see :func:`lr_search_space`) and enqueues the suggestion as the
  first trial. Cost: one range test for the whole study; the sampler then searches the LR like any parameter.
* :class:`TrialReporter` (pruning): a :class:`~autolr.report.Reporter` for :class:`~autolr.AutoLR` that sends the
  observed training loss to ``trial.report(loss, step)`` and asks ``trial.should_prune()``; guard interventions
  become user attrs (and, with ``prune_on_guard=True``, prune the trial). Reporters must never raise into training
  (autolr catches and warns), so the reporter only records the verdict: call :meth:`TrialReporter.raise_if_pruned`
  in your loop (after ``tuner.observe(loss)``), which raises ``optuna.TrialPruned``.

The LR parameter is single-valued (``low == high``) and its range differs from trial to trial, so Optuna's samplers
never sample it and ``optuna.importance`` leaves it out (importance needs one distribution shared by all trials).
Losses are reported as they are (lower is better): use a study with ``direction="minimize"``.

Several processes can work on one study through Optuna's shared storage (``optuna.create_study(storage=
"sqlite:///study.db", study_name=..., load_if_exists=True)`` in each, or a ``JournalStorage``); the helpers keep no
state outside the trial, so nothing else is needed.

Example:
    >>> import optuna                                                         # doctest: +SKIP
    >>> from autolr.integrations.optuna import suggest_lr
    >>> def objective(trial):                                                 # doctest: +SKIP
    ...     model = make_model(width=trial.suggest_int("width", 16, 128))
    ...     optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ...     suggest_lr(trial, model, optimizer, train_loader, loss_fn=loss_fn, min_confidence=0.2)
    ...     return train_and_validate(model, optimizer)
    >>> optuna.create_study().optimize(objective, n_trials=8)                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from autolr.range_test import lr_find_for_search, lr_find_for_trial
from autolr.report import Decision, LossFeed
from autolr.result import LRFindResult

try:
    import optuna
except ImportError as exc:  # pragma: no cover - optuna is an optional extra
    raise ImportError("autolr.integrations.optuna needs optuna: pip install 'torch-autolr[optuna]'") from exc

__all__ = ["TrialReporter", "lr_search_space", "narrow_lr_range", "suggest_lr"]


def _record(trial: Any, result: LRFindResult) -> None:
    s = result.suggestion
    trial.set_user_attr("autolr/lr", s.lr)
    trial.set_user_attr("autolr/confidence", float(s.confidence))
    trial.set_user_attr("autolr/reason", s.reason)


def suggest_lr(
    trial: optuna.Trial,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    *,
    min_confidence: float = 0.0,
    name: str | None = "lr",
    **lr_find_kwargs: Any,
) -> LRFindResult:
    """Find this trial's LR with a range test, apply it, record it on the trial; prune a trial without one.

    Args:
        trial: the running trial (inside the objective).
        model, optimizer, loader: as in :func:`autolr.lr_find`; their state is restored after the test, then the
            suggested LR is set on every param group (ratios between groups kept).
        min_confidence: prune the trial when the suggestion's confidence is below this (``0.1`` skips the
            flat-curve guesses, ``0.2`` weak suggestions too). A curve with no suggestion is always pruned.
        name: the trial parameter the LR is recorded as (``trial.suggest_float(name, lr, lr, log=True)``);
            ``None`` records only the user attrs.
        **lr_find_kwargs: any argument of :func:`autolr.lr_find` (``loss_fn``, ``num_steps``, ``end_lr``...);
            ``progress`` defaults to ``False``.

    Returns:
        The :class:`~autolr.LRFindResult`.

    Raises:
        optuna.TrialPruned: no suggestion, or a confidence below ``min_confidence`` (message: the reason). The user
            attrs are recorded first, so the pruned trial says why.
    """
    result, reason = lr_find_for_trial(model, optimizer, loader, min_confidence=min_confidence, **lr_find_kwargs)
    _record(trial, result)
    if reason is not None:
        raise optuna.TrialPruned(reason)
    result.apply(optimizer)
    if name is not None:
        trial.suggest_float(name, result.lr, result.lr, log=True)
    return result


def lr_search_space(result: LRFindResult, *, divergence_margin: float = 4.0) -> tuple[float, float]:
    """A log-uniform ``(low, high)`` LR range read off a range test's curve.

    ``low`` is where the loss starts to fall (``descent_low_lr``); ``high`` is the end of the descent
    (``descent_high_lr``), but never above the divergence edge divided by ``divergence_margin``. Missing evidence
    falls back on the suggestion: ``low = lr / 10``; ``high`` = the LR of the minimum loss, else ``lr * 10``
    (each still capped by the divergence edge). The range always contains the suggestion, and is at least a
    factor 4 wide around it. The same as :meth:`LRFindResult.search_range <autolr.LRFindResult.search_range>`
    (the Ray Tune adapter reads its range there too).

    Raises:
        ValueError: the range test gave no suggestion (its reason says what to change).
    """
    return result.search_range(divergence_margin=divergence_margin)


def narrow_lr_range(
    study: optuna.Study,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    *,
    name: str = "lr",
    enqueue: bool = True,
    divergence_margin: float = 4.0,
    fallback: tuple[float, float] | None = None,
    **lr_find_kwargs: Any,
) -> tuple[float, float]:
    """One range test for the whole study: the LR range to search, with the suggestion enqueued as the first trial.

    Run it before ``study.optimize`` on a representative model and optimizer (e.g. the default hyperparameters);
    their state is restored. The objective then calls ``trial.suggest_float(name, low, high, log=True)``.

    Args:
        study: the study (its user attrs get ``autolr/lr``, ``autolr/confidence``, ``autolr/reason``,
            ``autolr/lr_low`` and ``autolr/lr_high``).
        model, optimizer, loader, **lr_find_kwargs: as in :func:`autolr.lr_find` (``progress`` defaults to ``False``).
        name: the LR parameter's name in the objective.
        enqueue: ``study.enqueue_trial({name: suggestion})``, so the first trial runs at the suggested LR.
        divergence_margin: see :func:`lr_search_space`.
        fallback: the ``(low, high)`` to return when the range test gives no LR (your full search range): a
            warning gives the reason and nothing is enqueued. Without it, that case raises ``ValueError``.

    Returns:
        ``(low, high)``, see :func:`lr_search_space`.

    Raises:
        ValueError: the range test gave no suggestion (and no ``fallback``), or a bad ``fallback``.
    """
    result = lr_find_for_search(model, optimizer, loader, fallback=fallback, **lr_find_kwargs)
    _record(study, result)
    low, high = result.search_range(divergence_margin=divergence_margin, fallback=fallback)
    enqueue = enqueue and result.suggestion.lr is not None
    study.set_user_attr("autolr/lr_low", low)
    study.set_user_attr("autolr/lr_high", high)
    if enqueue:
        study.enqueue_trial({name: result.suggestion.lr})
    return low, high


class TrialReporter(LossFeed):
    """Sends what :class:`~autolr.AutoLR` observes to an Optuna trial: the pruning bridge.

    Pass it in ``AutoLR(..., reporters=[TrialReporter(trial)])`` and feed the loss with ``tuner.observe(loss)``.
    Every ``interval``-th optimizer step's observed loss goes to ``trial.report(loss, step)`` (losses reach the
    reporter in batches of the tuner's ``check_every``, so the pruner is asked once per batch); a step reported
    before (the guard rewinds the step count) is not reported again. Guard interventions set the user attrs
    ``autolr/guard_interventions`` and ``autolr/guard_reason``. A range test run by the tuner records
    ``autolr/lr``, ``autolr/confidence`` and ``autolr/reason``.

    A reporter never raises into training, so when the pruner says stop the reporter only remembers it:
    call :meth:`raise_if_pruned` after ``tuner.observe(loss)`` (every step, it costs nothing).

    Args:
        trial: the running trial.
        interval: report every this many optimizer steps (each report is a storage write; raise it with a
            database storage).
        prune_on_guard: a guard intervention (a divergence autolr recovered from) also prunes the trial.
    """

    def __init__(self, trial: optuna.Trial, *, interval: int = 1, prune_on_guard: bool = False) -> None:
        super().__init__(interval)
        self.trial = trial
        self.prune_on_guard = prune_on_guard
        self.pruned_reason: str | None = None

    @property
    def should_prune(self) -> bool:
        """Whether the pruner (or a guard intervention, with ``prune_on_guard``) asked to stop this trial."""
        return self.pruned_reason is not None

    def raise_if_pruned(self) -> None:
        """Raise ``optuna.TrialPruned`` (with the reason) when the trial should stop."""
        if self.pruned_reason is not None:
            raise optuna.TrialPruned(self.pruned_reason)

    def range_test_end(self, result: LRFindResult) -> None:
        _record(self.trial, result)

    def training_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        value = None if self.pruned_reason is not None else self.due_loss(step, metrics)
        if value is None:
            return
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned_reason = f"pruned by {type(self.trial.study.pruner).__name__} at step {step} (loss {value:.4g})"

    def decisions(self, decisions: Sequence[Decision]) -> None:
        guard = self.count_guards(decisions)
        if guard is None:
            return
        self.trial.set_user_attr("autolr/guard_interventions", self.guard_interventions)
        self.trial.set_user_attr("autolr/guard_reason", guard.reason)
        if self.prune_on_guard and self.pruned_reason is None:
            self.pruned_reason = f"autolr guard intervened: {guard.reason}"
