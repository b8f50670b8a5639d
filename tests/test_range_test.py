"""lr_find: the sweep, early stops, AMP/accumulation/clipping, exact restore, and bad input."""

from __future__ import annotations

import io
import math
import os
import sys
import tempfile
import types
import warnings
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch import nn

import autolr
from autolr import ConfigurationError, DataError
from autolr.batches import move_to_device
from autolr.range_test import sweep_lrs
from tests import tasks


def _find(model, opt, data=None, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("loss_fn", nn.CrossEntropyLoss())
    return autolr.lr_find(model, opt, data if data is not None else tasks.loader(), **kwargs)


# -- the acceptance test: training after lr_find == training without it, bit for bit -----------------------


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adamw"])
@pytest.mark.parametrize("use_scaler", [False, True])
def test_training_after_lr_find_is_bit_identical(opt_name: str, use_scaler: bool) -> None:
    def make():
        torch.manual_seed(0)
        model = tasks.BNDropoutNet()
        if opt_name == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8) if use_scaler else None
        tasks.train(model, opt, tasks.batches(seed=3), 3, scaler)  # mid-training: state exists
        return model, opt, scaler

    data = tasks.batches(seed=4)
    ref_model, ref_opt, ref_scaler = make()
    torch.manual_seed(123)
    for g in ref_opt.param_groups:
        g["lr"] = 0.05
    ref_losses = tasks.train(ref_model, ref_opt, data, 6, ref_scaler)

    model, opt, scaler = make()
    torch.manual_seed(123)
    result = _find(model, opt, num_steps=60, scaler=scaler)
    assert len(result.curve) > 10
    for g in opt.param_groups:
        g["lr"] = 0.05
    losses = tasks.train(model, opt, data, 6, scaler)

    assert losses == ref_losses
    tasks.assert_same_state(tasks.full_state(ref_model, ref_opt), tasks.full_state(model, opt))
    if use_scaler:
        assert scaler.state_dict() == ref_scaler.state_dict()


def test_state_is_unchanged_right_after_lr_find() -> None:
    model = tasks.BNDropoutNet()
    opt = tasks.two_group_optimizer(model)
    tasks.train(model, opt, tasks.batches(), 2)
    model.eval()
    before = tasks.full_state(model, opt)
    rng = torch.get_rng_state()
    _find(model, opt, num_steps=40)
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert torch.equal(rng, torch.get_rng_state())
    assert model.training is False


# -- the sweep ---------------------------------------------------------------------------------------------


def test_exponential_and_linear_sweeps_are_exact() -> None:
    assert sweep_lrs(1e-4, 1e-1, 4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    assert sweep_lrs(0.1, 1.0, 4, "linear") == pytest.approx([0.1, 0.4, 0.7, 1.0])


def test_lrs_seen_by_the_optimizer_follow_the_sweep_and_keep_group_ratios() -> None:
    model = tasks.BNDropoutNet()
    opt = tasks.two_group_optimizer(model, lr=0.02)  # ratio 10 between the groups
    seen: list[tuple[float, float]] = []
    handle = opt.register_step_pre_hook(lambda o, *_: seen.append((o.param_groups[0]["lr"], o.param_groups[1]["lr"])))
    result = _find(model, opt, start_lr=1e-5, end_lr=1e-1, num_steps=20, divergence_factor=1e9)
    handle.remove()
    assert result.curve.stop_reason == "completed"
    expected = sweep_lrs(1e-5, 1e-1, 20)
    assert [a for a, _ in seen] == pytest.approx(expected, rel=1e-12)
    assert [b for _, b in seen] == pytest.approx([x / 10 for x in expected], rel=1e-12)
    assert result.curve.lrs.tolist() == pytest.approx(expected, rel=1e-12)
    assert result.curve.group_ratios == pytest.approx((1.0, 0.1))
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.002]  # restored


def test_per_group_start_lrs_and_apply_keeps_ratios() -> None:
    model = tasks.BNDropoutNet()
    opt = tasks.two_group_optimizer(model)
    result = _find(model, opt, start_lr=[1e-5, 4e-5], end_lr=10.0, num_steps=60, apply=True)
    assert result.curve.group_ratios == pytest.approx((1.0, 4.0))
    assert result.lr is not None
    assert opt.param_groups[0]["lr"] == pytest.approx(result.lr)
    assert opt.param_groups[1]["lr"] == pytest.approx(4 * result.lr)


def test_short_loader_is_cycled() -> None:
    calls = []
    data = tasks.batches(count=3)

    def compute(batch):
        calls.append(1)
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    result = autolr.lr_find(model, opt, data, compute_loss=compute, num_steps=25, end_lr=1e-2, progress=False)
    assert len(result.curve) == 25 and len(calls) == 25


def test_gradient_accumulation_uses_n_micro_batches_per_step() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = []
    handle = opt.register_step_post_hook(lambda *_: steps.append(1))
    micro = []

    def compute(batch):
        micro.append(1)
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    result = autolr.lr_find(model, opt, tasks.loader(), compute_loss=compute, num_steps=12, end_lr=1e-2,
                            accumulation_steps=3, progress=False)
    handle.remove()
    assert len(result.curve) == 12 and len(steps) == 12 and len(micro) == 36


def test_gradient_clipping_bounds_the_update() -> None:
    model = nn.Linear(4, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    norms = []
    opt.register_step_pre_hook(lambda *_: norms.append(model.weight.grad.norm().item()))
    data = [(torch.randn(8, 4) * 100, torch.randn(8, 1))]
    autolr.lr_find(model, opt, data, loss_fn=nn.MSELoss(), num_steps=10, max_grad_norm=0.5, progress=False,
                   divergence_factor=1e30)
    assert norms and max(norms) <= 0.5 + 1e-6


def test_dict_and_nested_batches_with_compute_loss() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = [{"inputs": {"x": x}, "labels": [y]} for x, y in tasks.batches()]
    result = autolr.lr_find(model, opt, data, num_steps=15, end_lr=0.1, progress=False,
                            compute_loss=lambda b: nn.functional.cross_entropy(model(b["inputs"]["x"]), b["labels"][0]))
    assert len(result.curve) == 15


def test_move_to_device_handles_nested_containers() -> None:
    Pair = namedtuple("Pair", "a b")
    batch = {"x": [torch.ones(1), (torch.zeros(1), "text")], "p": Pair(torch.ones(1), 3)}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["p"], Pair) and moved["p"].b == 3 and moved["x"][1][1] == "text"
    assert torch.equal(moved["x"][0], torch.ones(1))


def test_validation_mode_records_held_out_loss() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    result = _find(model, opt, num_steps=20, end_lr=0.1, val_loader=tasks.batches(seed=9), val_batches=2)
    assert result.curve.loss_kind == "validation" and len(result.curve) == 20
    assert np.all(np.isfinite(result.curve.losses))


# -- stopping ----------------------------------------------------------------------------------------------


def test_divergence_stops_early_and_curve_is_cut_at_the_divergence() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    result = _find(model, opt, start_lr=1e-4, end_lr=1e4, num_steps=100)
    c = result.curve
    assert c.stop_reason in ("diverged", "non_finite")
    assert len(c) < 100
    if c.stop_reason == "diverged":
        best = np.nanmin(c.smoothed[:-1])
        assert c.smoothed[-1] > 4 * best and np.all(c.smoothed[:-1] <= 4 * np.minimum.accumulate(c.smoothed[:-1]))


def test_non_finite_loss_stops_and_state_is_restored() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = tasks.full_state(model, opt)
    count = [0]

    def compute(batch):
        count[0] += 1
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss * float("nan") if count[0] == 7 else loss

    result = autolr.lr_find(model, opt, tasks.loader(), compute_loss=compute, num_steps=50, progress=False)
    assert result.curve.stop_reason == "non_finite" and len(result.curve) == 7
    assert math.isnan(result.curve.losses[-1])
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_exception_in_user_code_restores_state_then_reraises() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = tasks.full_state(model, opt)
    count = [0]

    def compute(batch):
        count[0] += 1
        if count[0] == 5:
            raise RuntimeError("user bug")
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    with pytest.raises(RuntimeError, match="user bug"):
        autolr.lr_find(model, opt, tasks.loader(), compute_loss=compute, progress=False)
    tasks.assert_same_state(before, tasks.full_state(model, opt))


@pytest.mark.parametrize("policy", ["raise", "stop"])
def test_keyboard_interrupt(policy: str) -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = tasks.full_state(model, opt)
    count = [0]

    def compute(batch):
        count[0] += 1
        if count[0] == 30:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    if policy == "raise":
        with pytest.raises(KeyboardInterrupt):
            autolr.lr_find(model, opt, tasks.loader(), compute_loss=compute, progress=False)
    else:
        result = autolr.lr_find(model, opt, tasks.loader(), compute_loss=compute, progress=False,
                                keyboard_interrupt="stop")
        assert result.curve.stop_reason == "interrupted" and len(result.curve) == 29
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_grad_scaler_skipped_steps_are_not_points() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu")
    before_scale = scaler.state_dict()
    count = [0]

    def compute(batch):
        count[0] += 1
        loss = nn.functional.cross_entropy(model(batch[0]), batch[1])
        return loss * float("inf") if count[0] in (3, 4, 10) else loss  # inf gradients: skipped steps

    steps = []
    handle = opt.register_step_post_hook(lambda *_: steps.append(1))
    result = autolr.lr_find(model, opt, tasks.loader(), compute_loss=compute, num_steps=20, end_lr=0.1,
                            scaler=scaler, progress=False)
    handle.remove()
    assert result.curve.skipped_steps == 3
    assert len(result.curve) == 20 == len(steps)
    assert np.all(np.isfinite(result.curve.losses))
    assert scaler.state_dict() == before_scale


def test_autocast_bfloat16_on_cpu() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dtypes = []
    model.body[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    result = _find(model, opt, num_steps=10, end_lr=0.1, autocast_dtype=torch.bfloat16)
    assert len(result.curve) == 10 and dtypes[0] == torch.bfloat16


# -- no host sync per step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("check_every", [1, 10])
def test_hot_loop_reads_losses_only_every_check(monkeypatch: pytest.MonkeyPatch, check_every: int) -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = tasks.batches(count=4)
    counts = tasks.count_host_reads(monkeypatch)
    result = _find(model, opt, data, num_steps=100, end_lr=1e-2, check_every=check_every)
    monkeypatch.undo()
    assert len(result.curve) == 100
    assert counts["item"] == counts["cpu"] == counts["numpy"] == 0
    # one batched read per check, plus the final read of the curve
    assert counts["tolist"] <= 100 // check_every + 3
    if check_every == 10:
        assert counts["tolist"] <= 13


# -- bad input: clear errors before anything is touched ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "must be below end_lr"),
        ({"start_lr": -1e-3}, "must be > 0"),
        ({"end_lr": 0.0}, "must be > 0"),
        ({"num_steps": 1}, "num_steps must be >= 2"),
        ({"num_steps": 10.5}, "num_steps must be an integer"),
        ({"mode": "log"}, "mode must be 'exponential' or 'linear'"),
        ({"accumulation_steps": 0}, "accumulation_steps"),
        ({"max_grad_norm": 0}, "max_grad_norm must be > 0"),
        ({"divergence_factor": 1.0}, "divergence_factor must be > 1"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"snapshot": "gpu"}, "snapshot must be"),
        ({"method": "magic"}, "method must be one of"),
        ({"start_lr": [1e-7, 1e-7, 1e-7]}, "one start_lr per group"),
        ({"loss_fn": None}, "exactly one of loss_fn"),
        ({"compute_loss": lambda b: b}, "exactly one of loss_fn"),
        ({"keyboard_interrupt": "ignore"}, "keyboard_interrupt"),
    ],
)
def test_bad_arguments_raise_before_any_change(kwargs: dict, match: str) -> None:
    model = tasks.BNDropoutNet()
    opt = tasks.two_group_optimizer(model)
    before = tasks.full_state(model, opt)
    steps = []
    opt.register_step_pre_hook(lambda *_: steps.append(1))
    with pytest.raises(ConfigurationError, match=match):
        _find(model, opt, **kwargs)
    assert not steps
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_empty_loader_is_an_error() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(DataError, match="empty"):
        _find(model, opt, [])
    with pytest.raises(DataError, match="no batch"):
        _find(model, opt, iter([]))


@pytest.mark.parametrize(
    ("loss", "match"),
    [
        (lambda out, y: out.sum(dim=1).mean().item(), "must be a torch.Tensor"),
        (lambda out, y: out.sum(dim=1), "must be a scalar"),
        (lambda out, y: out.detach().mean(), "no gradient graph"),
    ],
)
def test_bad_loss_is_an_error_and_state_restored(loss, match: str) -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = tasks.full_state(model, opt)
    with pytest.raises(DataError, match=match):
        _find(model, opt, loss_fn=loss)
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_wrong_batch_format_for_loss_fn_points_to_compute_loss() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(DataError, match="compute_loss"):
        _find(model, opt, [{"x": torch.randn(4, 8)}])


def test_optimizer_problems_are_reported() -> None:
    model = tasks.BNDropoutNet()
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ConfigurationError, match="none of the model's trainable parameters"):
        _find(model, other)
    no_lr = torch.optim.SGD(model.parameters(), lr=0.1)
    del no_lr.param_groups[0]["lr"]
    with pytest.raises(ConfigurationError, match="has no 'lr'"):
        _find(model, no_lr)
    with pytest.raises(ConfigurationError, match=r"torch\.optim\.Optimizer"):
        _find(model, "adam")


def test_attached_scheduler_is_warned_about() -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _find(model, opt, num_steps=10, end_lr=0.1)
    assert any("scheduler is already attached" in str(w.message) for w in caught)
    assert opt.param_groups[0]["initial_lr"] == 0.01


def test_disk_snapshot_leaves_no_files() -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _find(model, opt, num_steps=20, snapshot="disk")
    with pytest.raises(RuntimeError):
        autolr.lr_find(model, opt, tasks.loader(), compute_loss=lambda b: (_ for _ in ()).throw(RuntimeError()),
                       snapshot="disk", progress=False)
    leftovers = {d for d in set(os.listdir(tempfile.gettempdir())) - before if d.startswith("autolr-snapshot-")}
    assert not leftovers


def test_progress_bar_can_be_on(capsys: pytest.CaptureFixture[str]) -> None:
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _find(model, opt, num_steps=10, end_lr=0.1, progress=True)
    assert "autolr range test" in capsys.readouterr().err


class _Stderr(io.StringIO):
    """A stand-in for sys.stderr: a terminal (``tty=True``) or a file/pipe/CI log."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("progress", "tty", "bar", "summary"),
    [
        ("default", False, False, True),  # redirected to a log: no bar (no carriage returns), the summary lines
        ("default", True, True, True),  # a terminal: the bar
        (None, False, False, True),
        (True, False, True, True),  # forced on, even into a file
        (False, True, False, False),  # off: nothing on stderr at all
    ],
)
def test_progress_bar_is_drawn_only_on_a_terminal_unless_forced(
    monkeypatch: pytest.MonkeyPatch, progress: object, tty: bool, bar: bool, summary: bool
) -> None:
    stderr = _Stderr(tty)
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    kwargs = {} if progress == "default" else {"progress": progress}
    autolr.lr_find(model, opt, tasks.loader(), loss_fn=nn.CrossEntropyLoss(), num_steps=12, end_lr=0.1, **kwargs)
    err = stderr.getvalue()
    assert ("\r" in err) is bar and ("autolr range test:   0%|" in err) is bar
    assert ("autolr range test: 12 points" in err) is summary


def test_autolr_progress_default_writes_plain_lines_into_a_log(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _Stderr(tty=False)
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = autolr.AutoLR(model, opt, schedule="constant", weight_decay=None)
    tuner.lr_find(tasks.loader(), nn.CrossEntropyLoss(), num_steps=12, end_lr=0.1)
    err = stderr.getvalue()
    assert "\r" not in err and "autolr plan" in err and "autolr range test: 12 points" in err
    tuner.detach()


def test_show_progress_auto_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from autolr.report import show_progress

    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    for tty in (False, True):
        monkeypatch.setattr(sys, "stderr", _Stderr(tty))
        assert show_progress(None) is tty and show_progress(True) and not show_progress(False)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, a detached process
    assert not show_progress(None)
    monkeypatch.setattr(sys, "stderr", _Stderr(False))
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    assert show_progress(None)  # a Jupyter kernel: its output area draws the bar


def test_a_model_that_learns_nothing_gets_a_flagged_guess_from_the_stability_edge(caplog) -> None:
    # targets independent of the inputs: no LR can lower the loss; large LRs blow up (the stability edge)
    import logging

    from autolr.suggest import FLAT_CONFIDENCE, FLAT_DIVERGENCE_FACTOR

    model, batches = tasks.unlearnable_regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with caplog.at_level(logging.WARNING, logger="autolr"):
        result = autolr.lr_find(model, optimizer, batches, loss_fn=nn.functional.mse_loss, progress=False)
    s = result.suggestion
    assert s.confidence == FLAT_CONFIDENCE and "no descent" in s.reason, s.reason
    assert s.lr == pytest.approx(s.evidence["divergence_lr"] / FLAT_DIVERGENCE_FACTOR)
    assert 0.1 < s.evidence["divergence_lr"] < 10  # SGD on this least-squares problem is unstable above lr ~ 2
    warned = [r.getMessage() for r in caplog.records if "low-confidence suggestion" in r.getMessage()]
    assert len(warned) == 1 and "stability edge" in warned[0]
    assert torch.count_nonzero(model.weight) == 0 and optimizer.param_groups[0]["lr"] == 0.01  # restored


def test_no_suggestion_is_warned_about_with_the_reason(caplog) -> None:
    import logging

    model, batches = tasks.unlearnable_regression(60)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with caplog.at_level(logging.WARNING, logger="autolr"):  # stops below the edge: nothing to read at all
        result = autolr.lr_find(
            model, optimizer, batches, loss_fn=nn.functional.mse_loss, end_lr=1e-4, num_steps=60, progress=False
        )
    assert result.suggestion.lr is None
    warned = [r.getMessage() for r in caplog.records if "no learning rate suggested" in r.getMessage()]
    assert len(warned) == 1 and result.suggestion.reason in warned[0]
