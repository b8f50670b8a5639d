"""The embeddable core: a range test over a step someone else owns, AutoLR inside other people's loops.

Everything here runs real training steps on small CPU models. Framework packages (Accelerate, Ignite) are
exercised in tests/test_core_frameworks.py; this file covers the core contracts they rely on.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import pytest
import torch
from torch import nn

import autolr
from autolr import AutoLR, AutoLRWarning, ConfigurationError, DataError
from autolr.param_groups import effective_lrs, unwrap_optimizer
from autolr.report import Reporter
from tests import tasks

LOSS = nn.CrossEntropyLoss()


def _model_and_opt(seed: int = 0, lr: float = 1e-3) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = tasks.BNDropoutNet()
    return model, torch.optim.AdamW(model.parameters(), lr=lr)


def _own_step(model: nn.Module, opt: torch.optim.Optimizer, *, divide: int = 1, every: int = 1):
    """A user's training step: forward, backward, optimizer step every ``every`` calls."""
    calls = [0]

    def step(batch):
        x, y = batch
        loss = LOSS(model(x), y)
        (loss / divide).backward()
        calls[0] += 1
        if calls[0] % every == 0:
            opt.step()
            opt.zero_grad()
        return loss

    step.calls = calls  # type: ignore[attr-defined]
    return step


# -- train_step: the range test over a step it does not own ---------------------------------------------


def test_train_step_measures_the_same_curve_as_loss_fn_and_restores_exactly() -> None:
    data = tasks.batches(count=6)
    model, opt = _model_and_opt()
    reference = autolr.lr_find(model, opt, data, loss_fn=LOSS, num_steps=40, progress=False)
    model, opt = _model_and_opt()
    before = tasks.full_state(model, opt)
    rng = torch.get_rng_state()
    result = autolr.lr_find(model, opt, data, train_step=_own_step(model, opt), num_steps=40, progress=False)
    assert result.curve.losses.tolist() == reference.curve.losses.tolist()
    assert result.suggestion.lr == reference.suggestion.lr
    assert result.settings["step"] == "train_step"
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert torch.equal(rng, torch.get_rng_state())


def test_train_step_with_its_own_accumulation_matches_autolr_accumulation() -> None:
    data = tasks.batches(count=6)
    model, opt = _model_and_opt()
    reference = autolr.lr_find(model, opt, data, loss_fn=LOSS, num_steps=30, accumulation_steps=2, progress=False)
    model, opt = _model_and_opt()
    step = _own_step(model, opt, divide=2, every=2)
    result = autolr.lr_find(model, opt, data, train_step=step, num_steps=30, accumulation_steps=2, progress=False)
    assert len(result.curve) == 30 and step.calls[0] == 60
    assert result.curve.losses.tolist() == reference.curve.losses.tolist()


def test_calls_without_an_optimizer_step_are_skipped_points_not_curve_points() -> None:
    """Like a GradScaler that finds inf gradients: the step that did not happen is no point on the curve."""
    model, opt = _model_and_opt()
    calls = [0]

    def flaky(batch):
        x, y = batch
        loss = LOSS(model(x), y)
        loss.backward()
        calls[0] += 1
        if calls[0] % 3:  # every third call skips the optimizer step
            opt.step()
        return loss

    result = autolr.lr_find(model, opt, tasks.batches(count=4), train_step=flaky, num_steps=20, progress=False)
    assert len(result.curve) == 20 and result.curve.skipped_steps == calls[0] - 20 > 0


def test_train_step_reads_losses_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _model_and_opt()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # (Adam's own step reads its step count)
    step = _own_step(model, opt)
    counts = tasks.count_host_reads(monkeypatch)
    result = autolr.lr_find(model, opt, tasks.batches(count=4), train_step=step, num_steps=64, end_lr=1e-2,
                            check_every=8, progress=False)
    monkeypatch.undo()
    assert len(result.curve) == 64
    assert counts["item"] == counts["cpu"] == counts["numpy"] == 0
    assert counts["tolist"] <= 64 // 8 + 3


@pytest.mark.parametrize(
    "returned",
    [lambda loss: {"loss": loss, "logits": None}, lambda loss: float(loss.detach()), lambda loss: loss.detach()],
    ids=["mapping", "float", "detached"],
)
def test_train_step_may_return_a_mapping_a_number_or_a_detached_tensor(returned) -> None:
    model, opt = _model_and_opt()
    inner = _own_step(model, opt)
    result = autolr.lr_find(model, opt, tasks.batches(count=4), train_step=lambda b: returned(inner(b)),
                            num_steps=20, progress=False)
    assert len(result.curve) == 20 and all(math.isfinite(v) for v in result.curve.losses)


@pytest.mark.parametrize(
    ("returned", "match"),
    [(None, "must return the loss"), ("0.5", "must return the loss"), (torch.ones(3), "scalar")],
    ids=["none", "string", "vector"],
)
def test_train_step_returning_no_loss_is_a_clear_error_with_state_restored(returned, match: str) -> None:
    model, opt = _model_and_opt()
    before = tasks.full_state(model, opt)
    inner = _own_step(model, opt)

    def step(batch):
        inner(batch)
        return returned

    with pytest.raises(DataError, match=match):
        autolr.lr_find(model, opt, tasks.batches(count=4), train_step=step, num_steps=20, progress=False)
    tasks.assert_same_state(before, tasks.full_state(model, opt))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backward": lambda loss: loss.backward()}, "backward cannot apply"),
        ({"max_grad_norm": 1.0}, "max_grad_norm cannot apply"),
        ({"autocast_dtype": torch.bfloat16}, "autocast_dtype cannot apply"),
        ({"loss_fn": LOSS}, "only with val_loader"),
        ({"val_loader": tasks.batches(count=2)}, "needs loss_fn= or compute_loss="),
        ({"train_step": "step"}, "train_step must be callable"),
    ],
)
def test_train_step_misuse_is_refused_before_any_step(kwargs: dict, match: str) -> None:
    model, opt = _model_and_opt()
    before = tasks.full_state(model, opt)
    steps: list[int] = []
    opt.register_step_pre_hook(lambda *_: steps.append(1))
    step = kwargs.pop("train_step", _own_step(model, opt))
    with pytest.raises(ConfigurationError, match=match):
        autolr.lr_find(model, opt, tasks.batches(count=4), train_step=step, progress=False, **kwargs)
    assert not steps
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_train_step_with_validation_loss_uses_compute_loss_for_held_out_batches() -> None:
    model, opt = _model_and_opt()
    evaluated = [0]

    def held_out_loss(batch):
        evaluated[0] += 1
        return LOSS(model(batch[0]), batch[1])

    step = _own_step(model, opt)
    result = autolr.lr_find(model, opt, tasks.batches(count=4), train_step=step,
                            compute_loss=held_out_loss, val_loader=tasks.batches(count=2, seed=9), val_batches=2,
                            num_steps=12, progress=False)
    # every training step is followed by two held-out batches (steps read after a divergence are cut off the curve)
    assert result.curve.loss_kind == "validation" and evaluated[0] == 2 * step.calls[0] >= 2 * len(result.curve)


def test_backward_and_autocast_hooks_replace_autolr_own_pieces() -> None:
    model, opt = _model_and_opt()
    backward_calls, autocast_seen = [0], []

    def backward(loss: torch.Tensor) -> None:
        backward_calls[0] += 1
        loss.backward()

    @contextlib.contextmanager
    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield

    def compute_loss(batch):
        autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return LOSS(model(batch[0]).float(), batch[1])

    result = autolr.lr_find(model, opt, tasks.batches(count=4), compute_loss=compute_loss, backward=backward,
                            autocast=bf16, num_steps=10, accumulation_steps=2, progress=False)
    assert backward_calls[0] == 20 == len(autocast_seen) and all(autocast_seen)
    assert result.settings["amp"] == "custom"
    with pytest.raises(ConfigurationError, match="not both"):
        autolr.lr_find(model, opt, tasks.batches(count=4), compute_loss=compute_loss, autocast=bf16,
                       autocast_dtype=torch.bfloat16, progress=False)


# -- wrapped optimizers -------------------------------------------------------------------------------


class _Wrapper:
    """A framework-style optimizer wrapper: holds the real one as ``.optimizer``, forwards step/zero_grad."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def step(self, closure=None):
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)


class _HalfInitialised(torch.optim.Optimizer):
    """Like Accelerate's AcceleratedOptimizer: an Optimizer subclass that never ran Optimizer.__init__."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:  # deliberately no super().__init__()
        self.optimizer = optimizer

    @property
    def param_groups(self):  # type: ignore[override]
        return self.optimizer.param_groups

    def step(self, closure=None):  # type: ignore[override]
        return self.optimizer.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none)


@pytest.mark.parametrize("wrap", [_Wrapper, _HalfInitialised, lambda o: _Wrapper(_HalfInitialised(o))])
def test_wrapped_optimizers_are_unwrapped_for_hooks_snapshots_and_lr_writes(wrap) -> None:
    model, opt = _model_and_opt()
    wrapped = wrap(opt)
    assert unwrap_optimizer(wrapped) is opt
    before = tasks.full_state(model, opt)
    result = autolr.lr_find(model, wrapped, tasks.batches(count=4), loss_fn=LOSS, num_steps=20, progress=False)
    assert len(result.curve) == 20
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    tuner = AutoLR(model, wrapped, schedule="constant", weight_decay=None, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, num_steps=20)
    for x, y in tasks.batches(count=3):
        wrapped.zero_grad()
        LOSS(model(x), y).backward()
        wrapped.step()  # the wrapper's step reaches the real optimizer: its post-hook counts it
    assert tuner.step == 3


def test_a_half_initialised_optimizer_without_a_real_one_inside_is_a_clear_error() -> None:
    class Broken(torch.optim.Optimizer):
        def __init__(self) -> None:  # never calls Optimizer.__init__, holds nothing
            pass

    model, _ = _model_and_opt()
    with pytest.raises(ConfigurationError, match=r"never ran Optimizer\.__init__"):
        autolr.lr_find(model, Broken(), tasks.batches(count=2), loss_fn=LOSS, progress=False)


# -- auto_step=False is a first-class mode ---------------------------------------------------------------


class _Recorder(Reporter):
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def training_metrics(self, step, metrics) -> None:
        self.rows.append((step, dict(metrics)))


def _train(tuner: AutoLR, model: nn.Module, opt: torch.optim.Optimizer, steps: int, *, step_scheduler: bool):
    lrs = []
    for x, y in tasks.batches(count=steps, seed=3):
        opt.zero_grad()
        loss = LOSS(model(x), y)
        loss.backward()
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if step_scheduler:
            tuner.scheduler.step()
        tuner.observe(loss)
    tuner.close()
    return lrs


@pytest.mark.parametrize("schedule", ["warmup_cosine", "onecycle", "linear"])
def test_auto_step_off_gives_the_same_trajectory_count_metrics_and_observations(schedule: str) -> None:
    runs = {}
    for auto in (True, False):
        model, opt = _model_and_opt()
        recorder = _Recorder()
        tuner = AutoLR(model, opt, schedule=schedule, weight_decay="auto", auto_step=auto, check_every=4,
                       reporters=[recorder], progress=False)
        tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=20, num_steps=30)
        with warnings.catch_warnings():
            warnings.simplefilter("error", AutoLRWarning)  # no "overridden" or "ignored step()" warning
            lrs = _train(tuner, model, opt, 20, step_scheduler=not auto)
        runs[auto] = (lrs, tuner.step, recorder.rows)
    assert runs[True][0] == runs[False][0]
    assert runs[True][1] == runs[False][1] == 20
    assert runs[True][2] == runs[False][2]
    losses = [(step, m["autolr/train_loss"]) for step, m in runs[False][2] if "autolr/train_loss" in m]
    assert [step for step, _ in losses] == list(range(1, 21))  # stamped with the real step numbers, not -7..0
    lr_rows = [(step, m["autolr/lr/group0"]) for step, m in runs[False][2] if "autolr/lr/group0" in m]
    assert [lr for _, lr in lr_rows] == [row[0] for row in runs[False][0]]  # the LR each step ran at


def test_the_guard_works_when_the_framework_steps_the_scheduler() -> None:
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, auto_step=False, guard=True, guard_every=4,
                   check_every=2, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=40, num_steps=30)
    base = tuner.scheduler.get_last_lr()[0]
    for i, (x, y) in enumerate(tasks.batches(count=24, seed=4)):
        opt.zero_grad()
        loss = LOSS(model(x), y) * (1e4 if 10 <= i < 14 else 1.0)  # a burst of blown-up losses
        loss.backward()
        opt.step()
        tuner.scheduler.step()
        tuner.observe(loss)
    guard = [d for d in tuner.decisions if d.name == "guard"]
    assert guard and tuner.scheduler.get_last_lr()[0] == pytest.approx(base * 0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(base * 0.5)


# -- warmup starts above zero ----------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["warmup_cosine", "linear"])
def test_the_first_training_step_of_a_warmup_already_learns(schedule: str) -> None:
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule=schedule, weight_decay=None, progress=False)
    plan = tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=100, num_steps=30)
    warmup = plan.decision("schedule").evidence["warmup_steps"]
    lrs = _train(tuner, model, opt, warmup + 1, step_scheduler=False)
    assert lrs[0][0] == pytest.approx(plan.lrs[0] / (warmup + 1)) and lrs[0][0] > 0
    assert lrs[warmup][0] == pytest.approx(plan.lrs[0])


# -- the recipe's parameter groups -----------------------------------------------------------------------


class ViTLike(nn.Module):
    """The no_weight_decay() protocol of timm's vision transformers, on a tiny model."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos_embed = nn.Parameter(torch.randn(1, 5, 8) * 0.02)
        self.patch = nn.Linear(6, 8)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU()) for _ in range(3)])
        self.rel_pos_bias_table = nn.Parameter(torch.zeros(4, 4))  # excluded by keyword
        self.head = nn.Linear(8, 2)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}

    def no_weight_decay_keywords(self) -> set[str]:
        return {"rel_pos_bias"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, 4, 6) "patches"
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), self.patch(x)], dim=1) + self.pos_embed
        out = self.blocks(tokens)[:, 0] + self.rel_pos_bias_table.sum() * 0
        return self.head(out)


def _vit_batches(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 4, 6, generator=g), torch.randint(0, 2, (16,), generator=g)) for _ in range(count)]


def test_model_no_weight_decay_and_keywords_are_honoured_under_a_wrapper() -> None:
    torch.manual_seed(0)
    inner = ViTLike()
    model = nn.Sequential(inner)  # names become "0.cls_token": the protocol is read off the submodule
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    AutoLR(model, opt, schedule="constant", weight_decay=0.05, progress=False)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for p in (inner.cls_token, inner.pos_embed, inner.rel_pos_bias_table):
        assert id(p) not in decayed
    assert id(inner.head.weight) in decayed and id(inner.patch.weight) in decayed


def _layer_decay_groups(model: ViTLike, decay: float = 0.65) -> list[dict]:
    """timm-style layer-wise LR decay: per-layer groups, same lr, an ``lr_scale`` each, no-decay groups at 0."""
    layers = [[model.cls_token, model.pos_embed, *model.patch.parameters()],
              *[list(b.parameters()) for b in model.blocks], [*model.head.parameters(), model.rel_pos_bias_table]]
    groups = []
    for depth, params in enumerate(layers):
        scale = decay ** (len(layers) - 1 - depth)
        no_decay = [p for p in params if p.ndim <= 1 or p is model.cls_token or p is model.pos_embed
                    or p is model.rel_pos_bias_table]
        decayed = [p for p in params if all(p is not q for q in no_decay)]
        groups += [{"params": no_decay, "weight_decay": 0.0, "lr_scale": scale},
                   {"params": decayed, "weight_decay": 0.05, "lr_scale": scale}]
    return [g for g in groups if g["params"]]


def test_layer_decay_groups_keep_their_lr_scale_and_are_never_merged_or_redecayed() -> None:
    torch.manual_seed(0)
    model = ViTLike()
    groups = _layer_decay_groups(model)
    opt = torch.optim.AdamW(groups, lr=1e-3)
    structure = [[id(p) for p in g["params"]] for g in opt.param_groups]
    scales = [g["lr_scale"] for g in opt.param_groups]
    assert len(set(scales)) == 5
    tuner = AutoLR(model, opt, schedule="constant", weight_decay="auto", progress=False)
    assert [[id(p) for p in g["params"]] for g in opt.param_groups] == structure  # nothing merged or re-split
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05 if g["weight_decay"] else 0.0 for g in groups]
    plan = tuner.lr_find(_vit_batches(), LOSS, total_steps=10, num_steps=30)
    lrs = [g["lr"] for g in opt.param_groups]
    for lr, scale in zip(lrs, scales):
        assert lr / lrs[-1] == pytest.approx(scale / scales[-1])  # layer decay kept
    assert lrs[0] == pytest.approx(plan.lrs[0])
    # the range test swept the groups in the same ratios
    assert list(tuner.result.curve.group_ratios) == pytest.approx([s / scales[0] for s in scales])


def test_effective_lrs_reads_lr_scale_once() -> None:
    p = [nn.Parameter(torch.zeros(1)) for _ in range(3)]
    fresh = torch.optim.SGD([{"params": [p[0]], "lr_scale": 0.25}, {"params": [p[1]], "lr_scale": 0.5},
                             {"params": [p[2]]}], lr=0.1)
    assert effective_lrs(fresh) == pytest.approx([0.025, 0.05, 0.1])
    for group, lr in zip(fresh.param_groups, (0.025, 0.05, 0.1)):  # a scheduler already applied the scales
        group["lr"] = lr
    assert effective_lrs(fresh) == pytest.approx([0.025, 0.05, 0.1])


# -- nobody silently overrides the plan ------------------------------------------------------------------


def test_a_scheduler_created_after_lr_find_warns_once_naming_the_fix() -> None:
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule="warmup_cosine", weight_decay=None, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=50, num_steps=30)
    other = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)  # e.g. timm's or the Trainer's own
    with pytest.warns(AutoLRWarning, match="changed by something other than autolr's plan") as record:
        for x, y in tasks.batches(count=6):
            opt.zero_grad()
            LOSS(model(x), y).backward()
            opt.step()
            other.step()
    assert len([w for w in record if issubclass(w.category, AutoLRWarning)]) == 1
    assert "auto_step=False" in str(record[0].message) and "tuner.detach()" in str(record[0].message)


def test_no_override_warning_in_correct_setups() -> None:
    """Self-stepping, a plateau schedule fed at epoch end, a guard intervention, a second range test."""
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule="plateau", weight_decay="auto", guard=True, guard_every=3, check_every=2,
                   progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, num_steps=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRWarning)
        for epoch in range(8):
            for i, (x, y) in enumerate(tasks.batches(count=5, seed=epoch)):
                opt.zero_grad()
                loss = LOSS(model(x), y) * (1e5 if epoch == 2 and i == 3 else 1.0)
                loss.backward()
                opt.step()
                tuner.observe(loss)
            tuner.end_epoch(val_loss=1.0)  # never improves: the plateau cuts the LR
        steps = tuner.step
    with pytest.warns(AutoLRWarning, match="already attached"):  # (autolr's own scheduler: lr_find says so)
        autolr.lr_find(model, opt, tasks.batches(count=4), loss_fn=LOSS, num_steps=20, progress=False)
    assert tuner.step == steps  # a range test's steps are not training steps
    assert any(d.name == "plateau" for d in tuner.decisions)


def test_a_plan_no_optimizer_step_ever_uses_is_warned_about() -> None:
    """The naive framework wiring: AutoLR on one optimizer, training by another (a Trainer that built its own)."""
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=10, num_steps=20)
    theirs = torch.optim.AdamW(model.parameters(), lr=5e-5)  # what the framework built
    with pytest.warns(AutoLRWarning, match="has not taken a single step") as record:
        for x, y in tasks.batches(count=5):
            theirs.zero_grad()
            loss = LOSS(model(x), y)
            loss.backward()
            theirs.step()
            tuner.observe(loss)
        tuner.close()
    assert len([w for w in record if "single step" in str(w.message)]) == 1 and tuner.step == 0
    other = AutoLR(*_model_and_opt(seed=1), schedule="constant", weight_decay=None, progress=False)
    other.lr_find(tasks.batches(count=4), LOSS, total_steps=10, num_steps=20)
    with pytest.warns(AutoLRWarning, match="observe\\(\\) was called 100 times"):
        for _ in range(100):  # (micro-batches of an accumulation never get this far without a step)
            other.observe(1.0)


def test_no_idle_warning_when_the_plans_optimizer_steps() -> None:
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=10, num_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoLRWarning)
        for x, y in tasks.batches(count=5):
            opt.zero_grad()
            loss = LOSS(model(x), y)
            loss.backward()
            opt.step()
            tuner.observe(loss)
        tuner.close()
    assert tuner.step == 5


def test_micro_batch_losses_are_observed_once_per_optimizer_step_as_their_mean() -> None:
    """Frameworks hand over every micro-batch's loss; the tuner observes their mean after each real step, also
    right after a resume (the micro-batches count from the resumed step)."""
    model, opt = _model_and_opt()
    tuner = AutoLR(model, opt, schedule="constant", weight_decay=None, check_every=1, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=20, num_steps=20)
    seen = _Recorder()
    tuner.reporters.append(seen)
    losses = []
    for i, (x, y) in enumerate(tasks.batches(count=6)):
        loss = LOSS(model(x), y)
        (loss / 2).backward()
        losses.append(loss.detach())
        if i % 2 == 1:
            opt.step()
            opt.zero_grad()
        tuner.observe_micro_batch(loss)
    tuner.observe_micro_batch(None)  # a micro-batch without a loss: nothing to add, nothing observed yet
    tuner.close()
    observed = [m["autolr/train_loss"] for _, m in seen.rows if "autolr/train_loss" in m]
    expected = [float(torch.stack(losses[i:i + 2]).mean()) for i in (0, 2, 4)]
    assert observed == pytest.approx(expected, rel=1e-6) and tuner.step == 3
    resumed = AutoLR(*_model_and_opt(), schedule="constant", weight_decay=None, progress=False)
    resumed.load_state_dict(tuner.state_dict())
    resumed.observe_micro_batch(torch.tensor(1.0))  # first micro-batch after resuming at step 3: no step yet
    assert resumed._micro and resumed._observed == 0
