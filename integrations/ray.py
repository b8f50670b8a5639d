"""Ray Tune: the range test inside a Tune search.

The three helpers of :mod:`autolr.integrations.optuna`, in Tune's idiom (function trainables and
``tune.report``):

* :func:`suggest_lr` (per trial): inside a function trainable, after the trial's model and optimizer are built, run a
  range test (state restored), set the suggested LR on the optimizer (every param group, ratios between groups
  kept), and return ``{"autolr/lr", "autolr/confidence", "autolr/reason"}``: include that dict in your
  ``tune.report`` calls (and give it to :class:`TuneReporter`) and every result of the trial says which LR it trained
  with and why. A trial whose curve gives no LR, or one less confident than ``min_confidence``, ends before any
  training: one final result ``{metric: nan, "autolr/pruned": reason, ...}`` is reported and :class:`TrialPruned`
  (a ``SystemExit`` with code 0, the way Tune itself ends a trial it stops) is raised, so the trial is
  ``TERMINATED``, not ``ERROR``, and is never retried. Cost: one range test per trial (``num_steps`` optimizer
  steps, 100 by default).
* :func:`narrow_lr_range` (per search): one range test up front, on a representative model; returns
  ``tune.loguniform(low, high)`` read off the curve (from where the loss starts to fall to below the divergence
  edge, see :func:`lr_search_space`) and ``points_to_evaluate=[{"lr": suggestion}]`` for the search algorithm, so the
  first trial runs at the suggestion. Cost: one range test for the whole search; the search algorithm then searches
  the LR like any parameter.
* :class:`TuneReporter` (early stopping): a :class:`~autolr.report.Reporter` for :class:`~autolr.AutoLR` that sends
  the observed training loss to ``tune.report({metric: loss, "autolr/step": step, ...})``, so a Tune scheduler
  (ASHA, the median stopping rule) can stop the trial; guard interventions join the reports. Tune stops a trial by
  raising ``SystemExit`` inside ``tune.report``; reporters must never raise into training (autolr catches and warns),
  so the reporter only records it: call :meth:`TuneReporter.raise_if_stopped` in your loop (after
  ``tuner.observe(loss)``), which raises :class:`TrialPruned`.

Tune rejects a result that lacks the metric its ``TuneConfig``, scheduler or search algorithm reads (the whole
``Tuner.fit`` fails), so name it: ``suggest_lr(..., metric="loss")`` and ``TuneReporter(metric="loss")``. With the
reporter, that metric is the training loss while the trial trains; report your final value (e.g. the validation
loss) under the same name. Losses are reported as they are (lower is better): use ``mode="min"``.

Several machines work through Ray's own cluster (``ray.init(address="auto")`` on a node of a running cluster, or
``ray start``): trials run wherever Tune places them and the helpers keep no state outside the trial, so nothing else
is needed.

Example:
    >>> from ray import tune                                                   # doctest: +SKIP
    >>> from autolr.integrations.ray import suggest_lr
    >>> def trainable(config):                                                 # doctest: +SKIP
    ...     model = make_model(width=config["width"])
    ...     optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ...     lr = suggest_lr(model, optimizer, train_loader, loss_fn=loss_fn, metric="loss", min_confidence=0.2)
    ...     for epoch in range(10):
    ...         train_one_epoch(model, optimizer)
    ...         tune.report({"loss": validate(model), **lr})
    >>> tune.Tuner(trainable, param_space={"width": tune.randint(16, 128)},       # doctest: +SKIP
    ...            tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=8)).fit()
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from autolr.range_test import lr_find_for_search, lr_find_for_trial
from autolr.report import Decision, LossFeed
from autolr.result import LRFindResult

try:
    from ray import tune
    from ray.tune.result import DONE
    from ray.tune.search.sample import Float
except ImportError as exc:  # pragma: no cover - ray is an optional extra
    raise ImportError("autolr.integrations.ray needs Ray Tune: pip install 'torch-autolr[ray]'") from exc

__all__ = ["LRRange", "TrialPruned", "TuneReporter", "lr_metrics", "lr_search_space", "narrow_lr_range", "suggest_lr"]


class TrialPruned(SystemExit):
    """The trial ends here: autolr found no usable LR (:func:`suggest_lr`), or Tune stopped the trial or the guard
    intervened (:meth:`TuneReporter.raise_if_stopped`). ``reason`` says which.

    It is a ``SystemExit`` with code 0 inside a Tune trial: Tune's own way of ending a trial it stops, so the trial
    is ``TERMINATED`` (not ``ERROR``, not retried by ``FailureConfig``) and the last result stays what was reported.
    ``except Exception`` does not catch it; ``except TrialPruned`` does (re-raise it after your cleanup). Outside a
    Tune trial its code is the reason, so an uncaught one prints it and exits with status 1.
    """

    def __init__(self, reason: str, *, code: int | str = 0) -> None:
        super().__init__(code)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class LRRange(NamedTuple):
    """What :func:`narrow_lr_range` returns (a tuple: ``space, points, result = narrow_lr_range(...)``)."""

    space: Float
    """``tune.loguniform(low, high)``: put it in ``param_space`` under the LR's name."""
    points_to_evaluate: list[dict[str, float]]
    """``[{name: suggestion}]``: the search algorithm's ``points_to_evaluate``, so the first trial runs there."""
    result: LRFindResult
    """The range test (curve and suggestion)."""


def _in_trial() -> bool:
    """Whether this code runs inside a Tune trial (outside one, ``tune.report`` warns and drops the result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tune.get_context().get_trial_id() is not None
        except Exception:  # an older or newer session layout: assume a trial, the common case
            return True


def lr_metrics(result: LRFindResult) -> dict[str, Any]:
    """The range test's outcome as Tune metrics: ``autolr/lr`` (param group 0's LR, ``None`` without a suggestion),
    ``autolr/confidence`` and ``autolr/reason``.

    Example:
        >>> from autolr.curve import Curve
        >>> from autolr.suggest import Suggestion
        >>> lr_metrics(LRFindResult(Curve([1e-3], [1.0]), Suggestion(0.01, "valley", 0.8, "steepest descent")))
        {'autolr/lr': 0.01, 'autolr/confidence': 0.8, 'autolr/reason': 'steepest descent'}
    """
    s = result.suggestion
    return {
        "autolr/lr": None if s.lr is None else float(s.lr),
        "autolr/confidence": float(s.confidence),
        "autolr/reason": s.reason,
    }


def _end_trial(metric: str | None, reason: str, metrics: Mapping[str, Any]) -> TrialPruned:
    """Report a final result saying why the trial ends (Tune needs ``metric`` in it: NaN, no value), and return the
    exception that ends it."""
    if not _in_trial():
        return TrialPruned(reason, code=reason)
    final: dict[str, Any] = {} if metric is None else {metric: float("nan")}
    try:
        # ``done`` makes Tune stop the trial on this result; it then ends the thread inside ``tune.report`` with
        # SystemExit(0). (A trial function that merely raised SystemExit would leave Tune waiting for a result.)
        tune.report({**final, **metrics, "autolr/pruned": reason, DONE: True})
    except SystemExit:
        pass
    return TrialPruned(reason)


def suggest_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    *,
    metric: str | None,
    min_confidence: float = 0.0,
    **lr_find_kwargs: Any,
) -> dict[str, Any]:
    """Find this trial's LR with a range test and apply it; end a trial without one before it trains.

    Call it inside a Tune function trainable, after the model and optimizer are built.

    Args:
        model, optimizer, loader: as in :func:`autolr.lr_find`; their state is restored after the test, then the
            suggested LR is set on every param group (ratios between groups kept).
        metric: the metric your ``TuneConfig`` (or scheduler, or search algorithm) reads, ``None`` when none reads
            one. Only used when the trial ends here: Tune rejects a result without it, so the final result carries
            it as NaN (``ResultGrid.get_best_result`` skips NaN; schedulers ignore it).
        min_confidence: end the trial when the suggestion's confidence is below this (``0.1`` skips the flat-curve
            guesses, ``0.2`` weak suggestions too). A curve with no suggestion always ends it.
        **lr_find_kwargs: any argument of :func:`autolr.lr_find` (``loss_fn``, ``num_steps``, ``end_lr``...);
            ``progress`` defaults to ``False``.

    Returns:
        :func:`lr_metrics`: ``{"autolr/lr": lr, "autolr/confidence": c, "autolr/reason": why}``. Include it in each
        ``tune.report`` (``tune.report({"loss": loss, **lr})``) and pass it to ``TuneReporter(extra=...)``.

    Raises:
        TrialPruned: no suggestion, or a confidence below ``min_confidence``; raised after a final result
            ``{metric: nan, "autolr/pruned": reason, "autolr/lr": ..., ...}`` was reported, so the trial's results
            say why. The optimizer is left as it was.
    """
    result, reason = lr_find_for_trial(model, optimizer, loader, min_confidence=min_confidence, **lr_find_kwargs)
    metrics = lr_metrics(result)
    if reason is not None:
        raise _end_trial(metric, reason, metrics)
    result.apply(optimizer)
    return metrics


def lr_search_space(result: LRFindResult, *, divergence_margin: float = 4.0) -> Float:
    """``tune.loguniform(low, high)`` with the range read off a range test's curve.

    ``low`` is where the loss starts to fall, ``high`` the end of the descent but never above the divergence edge
    divided by ``divergence_margin``; the range contains the suggestion. See
    :meth:`LRFindResult.search_range <autolr.LRFindResult.search_range>` (the Optuna adapter uses the same range).

    Raises:
        ValueError: the range test gave no suggestion (its reason says what to change).
    """
    low, high = result.search_range(divergence_margin=divergence_margin)
    return tune.loguniform(low, high)


def narrow_lr_range(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable[Any],
    *,
    name: str = "lr",
    divergence_margin: float = 4.0,
    fallback: tuple[float, float] | None = None,
    **lr_find_kwargs: Any,
) -> LRRange:
    """One range test for the whole search: the LR's search space, and the suggestion as the first point to try.

    Run it in the driver before ``Tuner.fit`` on a representative model and optimizer (e.g. the default
    hyperparameters); their state is restored. Then::

        space, points, _ = narrow_lr_range(model, optimizer, loader, loss_fn=loss_fn)
        tune.Tuner(trainable, param_space={"lr": space, ...},
                   tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(points_to_evaluate=points), ...))

    (``OptunaSearch``, ``HyperOptSearch`` and the other search algorithms take ``points_to_evaluate`` too.) The
    trainable sets ``config["lr"]`` on its optimizer.

    Args:
        model, optimizer, loader, **lr_find_kwargs: as in :func:`autolr.lr_find` (``progress`` defaults to ``False``).
        name: the LR's key in ``param_space`` (used in ``points_to_evaluate``).
        divergence_margin: see :func:`lr_search_space`.
        fallback: the ``(low, high)`` to search when the range test gives no LR (your full search range): a
            warning gives the reason and ``points_to_evaluate`` is empty. Without it, that case raises ``ValueError``.

    Returns:
        :class:`LRRange`: ``(space, points_to_evaluate, result)``.

    Raises:
        ValueError: the range test gave no suggestion (and no ``fallback``), or a bad ``fallback``.
    """
    result = lr_find_for_search(model, optimizer, loader, fallback=fallback, **lr_find_kwargs)
    low, high = result.search_range(divergence_margin=divergence_margin, fallback=fallback)
    points = [] if result.suggestion.lr is None else [{name: float(result.suggestion.lr)}]
    return LRRange(tune.loguniform(low, high), points, result)


class TuneReporter(LossFeed):
    """Sends what :class:`~autolr.AutoLR` observes to Ray Tune: the early-stopping bridge.

    Pass it in ``AutoLR(..., reporters=[TuneReporter(metric="loss", extra=lr)])`` and feed the loss with
    ``tuner.observe(loss)``. Every ``interval``-th optimizer step's observed loss goes to ``tune.report({metric:
    loss, "autolr/step": step, **extra})`` (a non-finite loss as ``inf``); a step reported before (the guard rewinds
    the step count) is not reported again. Each report is one Tune iteration (``training_iteration``); schedulers
    count in those unless given ``time_attr="autolr/step"``. Losses reach the reporter in batches of the tuner's
    ``check_every`` (one batch late), so the scheduler decides once per batch. A range test run by the tuner puts
    ``autolr/lr``, ``autolr/confidence`` and ``autolr/reason`` into the later reports; guard interventions put
    ``autolr/guard_interventions`` and ``autolr/guard_reason``.

    When a scheduler stops the trial, ``tune.report`` raises ``SystemExit``; a reporter never raises into training,
    so the reporter only remembers it (and reports no more): call :meth:`raise_if_stopped` after
    ``tuner.observe(loss)`` (every step, it costs nothing). Tune may end the trial's process at any point after
    stopping it; the call ends the work early when it does not.

    Args:
        metric: the key the loss is reported under: the metric your scheduler (and ``TuneConfig``) reads.
        interval: report every this many optimizer steps (each report waits for a round trip to the Tune driver and
            is written by each of its loggers: a few milliseconds).
        extra: metrics added to every report (what :func:`suggest_lr` returned).
        stop_on_guard: a guard intervention (a divergence autolr recovered from) also ends the trial; the final
            result then carries ``autolr/pruned`` with the reason and ``metric`` as NaN.
    """

    def __init__(
        self,
        metric: str = "loss",
        *,
        interval: int = 1,
        extra: Mapping[str, Any] | None = None,
        stop_on_guard: bool = False,
    ) -> None:
        super().__init__(interval)
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty string, got {metric!r}")
        self.metric = metric
        self.extra: dict[str, Any] = dict(extra or {})
        self.stop_on_guard = stop_on_guard
        self.stopped_reason: str | None = None
        self._guard_reason: str | None = None  # an autolr decision to stop, not reported yet

    @property
    def should_stop(self) -> bool:
        """Whether Tune stopped this trial (or the guard intervened, with ``stop_on_guard``)."""
        return self.stopped_reason is not None

    def raise_if_stopped(self) -> None:
        """Raise :class:`TrialPruned` (with the reason) when the trial should stop.

        When the guard decided (``stop_on_guard``), a final result with ``autolr/pruned`` is reported first.
        """
        if self.stopped_reason is None:
            return
        if self._guard_reason is not None:
            reason, self._guard_reason = self._guard_reason, None
            raise _end_trial(self.metric, reason, self.extra)
        raise TrialPruned(self.stopped_reason)

    def range_test_end(self, result: LRFindResult) -> None:
        self.extra.update(lr_metrics(result))

    def training_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        value = None if self.stopped_reason is not None else self.due_loss(step, metrics)
        if value is None:
            return
        try:
            tune.report({self.metric: value, "autolr/step": step, **self.extra})
        except SystemExit:  # Tune's way of stopping a trial (a scheduler, a stopper, the end of the experiment)
            self.stopped_reason = f"Tune stopped the trial at step {step} (loss {value:.4g})"

    def decisions(self, decisions: Sequence[Decision]) -> None:
        guard = self.count_guards(decisions)
        if guard is None:
            return
        self.extra["autolr/guard_interventions"] = self.guard_interventions
        self.extra["autolr/guard_reason"] = guard.reason
        if self.stop_on_guard and self.stopped_reason is None:
            self.stopped_reason = self._guard_reason = f"autolr guard intervened: {guard.reason}"
