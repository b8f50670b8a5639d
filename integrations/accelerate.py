"""Accelerate: autolr's reports in the trackers of an ``Accelerator`` (``log_with="wandb"``).

A custom Accelerate loop needs no adapter for the range test or the plan: ``autolr.lr_find`` and
``autolr.AutoLR`` take the prepared model and optimizer (``AcceleratedOptimizer`` is unwrapped), your step as
``train_step=`` (``accelerator.accumulate``, ``accelerator.backward``, clipping, ``optimizer.step()``), and
``accelerator.register_for_checkpointing(tuner)`` checkpoints the tuner with ``save_state`` / ``load_state``
(see ``examples/accelerate_loop.py``). What is left is logging into the run the accelerator manages:

    >>> from autolr.integrations.accelerate import tracker_reporters
    >>> accelerator.init_trackers("my-project")                                  # doctest: +SKIP
    >>> tuner = autolr.AutoLR(model, optimizer, reporters=tracker_reporters(accelerator))  # doctest: +SKIP

On the main process, with a W&B tracker, that is a :class:`~autolr.integrations.wandb.WandbReporter` on the
tracker's run: the range test (curve, plot, decisions table) and the LR and weight decay of every group join the
rows you log with ``accelerator.log(values, step=...)``; autolr never commits a row of its own there, never
passes ``step=`` and never finishes the run (``accelerator.end_training()`` does). Other processes and other
trackers get nothing.
"""

from __future__ import annotations

from typing import Any

from autolr.report import Reporter

__all__ = ["tracker_reporters"]


def tracker_reporters(accelerator: Any, **wandb_options: Any) -> list[Reporter]:
    """Reporters that log autolr into the accelerator's trackers (call it after ``init_trackers``).

    Args:
        accelerator: an ``accelerate.Accelerator``.
        **wandb_options: more :class:`~autolr.integrations.wandb.WandbReporter` arguments (``local_dir``,
            ``log_every``...); ``run`` is always the tracker's.

    Returns:
        On the main process, a ``WandbReporter`` on the run of the ``"wandb"`` tracker if there is one; otherwise
        an empty list.
    """
    if not accelerator.is_main_process:
        return []
    reporters: list[Reporter] = []
    for tracker in getattr(accelerator, "trackers", ()):
        if getattr(tracker, "name", None) == "wandb" and getattr(tracker, "run", None) is not None:
            from autolr.integrations.wandb import WandbReporter

            reporters.append(WandbReporter(**{"lr_interval": 0.0, **wandb_options, "run": tracker.run}))
    return reporters
