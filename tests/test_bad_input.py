"""Bad input a new user really passes: each gets an AutoLRError naming the cause and the fix, before any
optimizer step, with the model and optimizer unchanged. Also: numpy scalars are numbers, and the loader's own
random generator is put back, so the next epoch's order is the one it would have been."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

import autolr
from autolr import AutoLR, AutoLRError, ConfigurationError, DataError
from tests import tasks

LOSS = nn.CrossEntropyLoss()


def _setup() -> tuple[nn.Module, torch.optim.Optimizer, list[int], dict]:
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps: list[int] = []
    opt.register_step_pre_hook(lambda *_: steps.append(1))
    return model, opt, steps, tasks.full_state(model, opt)


def _refused(call, error: type[Exception], match: str, model, opt, steps, before) -> None:
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, AutoLRError)
    assert not steps, "an optimizer step ran before the error"
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_arguments_in_the_wrong_order_are_named_before_any_work() -> None:
    model, opt, steps, before = _setup()
    _refused(lambda: autolr.lr_find(opt, model, tasks.batches(count=2), loss_fn=LOSS, progress=False),
             ConfigurationError, r"model must be a torch.nn.Module, got AdamW; the arguments are \(model, optimizer",
             model, opt, steps, before)
    _refused(lambda: autolr.lr_find(model, tasks.batches(count=2), opt, loss_fn=LOSS, progress=False),
             ConfigurationError, "optimizer must be a torch.optim.Optimizer, got list", model, opt, steps, before)
    _refused(lambda: AutoLR(opt, model, progress=False), ConfigurationError, "model must be a torch.nn.Module",
             model, opt, steps, before)
    _refused(lambda: AutoLR(model, model, progress=False), ConfigurationError, "That is a model",
             model, opt, steps, before)


def test_every_parameter_frozen_says_so() -> None:
    model, opt, steps, _ = _setup()
    for p in model.parameters():
        p.requires_grad_(False)
    before = tasks.full_state(model, opt)
    _refused(lambda: autolr.lr_find(model, opt, tasks.batches(count=2), loss_fn=LOSS, progress=False),
             ConfigurationError, r"no parameter of the model requires grad \(all 6 have requires_grad=False\)",
             model, opt, steps, before)


def test_a_model_without_parameters_beside_another_models_optimizer_is_refused() -> None:
    model, opt, steps, before = _setup()
    _refused(lambda: autolr.lr_find(nn.ReLU(), opt, tasks.batches(count=2), loss_fn=LOSS, progress=False),
             ConfigurationError, r"the model \(ReLU\) has no parameters", model, opt, steps, before)
    other = nn.Linear(2, 2)
    _refused(lambda: autolr.lr_find(other, opt, tasks.batches(count=2), loss_fn=LOSS, progress=False),
             ConfigurationError, "holds none of the model's trainable parameters", model, opt, steps, before)


@pytest.mark.parametrize("name", ["loss_fn", "compute_loss", "train_step"])
def test_a_class_where_an_instance_or_function_belongs_is_named(name: str) -> None:
    model, opt, steps, before = _setup()
    _refused(lambda: autolr.lr_find(model, opt, tasks.batches(count=2), progress=False, **{name: nn.CrossEntropyLoss}),
             ConfigurationError, rf"{name} is the class CrossEntropyLoss.*{name}=CrossEntropyLoss\(\)",
             model, opt, steps, before)


def test_lbfgs_is_refused_up_front_when_autolr_runs_the_step_and_works_through_train_step() -> None:
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=2)
    steps: list[int] = []
    opt.register_step_pre_hook(lambda *_: steps.append(1))
    before = tasks.full_state(model, opt)
    _refused(lambda: autolr.lr_find(model, opt, tasks.batches(count=2), loss_fn=LOSS, progress=False),
             ConfigurationError, r"LBFGS.step\(\) needs a closure.*train_step=", model, opt, steps, before)

    def train_step(batch):
        def closure():
            opt.zero_grad()
            loss = LOSS(model(batch[0]), batch[1])
            loss.backward()
            return loss
        return opt.step(closure)

    result = autolr.lr_find(model, opt, tasks.batches(count=2), train_step=train_step, start_lr=1e-4, end_lr=1.0,
                            num_steps=10, progress=False)
    assert len(result.curve) >= 2 and len(steps) >= len(result.curve)
    tasks.assert_same_state(before, tasks.full_state(model, opt))


def test_a_one_shot_iterator_that_runs_out_says_what_happened_and_restores() -> None:
    model, opt, _, before = _setup()
    rng = torch.get_rng_state()
    with pytest.raises(DataError, match=r"one-shot iterator \(generator\) and ran out after 5 batches"):
        autolr.lr_find(model, opt, (b for b in tasks.batches(count=5)), loss_fn=LOSS, num_steps=20, progress=False)
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    assert torch.equal(rng, torch.get_rng_state())
    # long enough: a generator is fine
    result = autolr.lr_find(model, opt, (b for b in tasks.batches(count=20)), loss_fn=LOSS, num_steps=20,
                            progress=False)
    assert len(result.curve) >= 2


def test_a_dataset_passed_as_the_loader_gets_a_hint() -> None:
    model, opt, steps, before = _setup()
    x, y = tasks.batches(count=1)[0]
    _refused(lambda: autolr.lr_find(model, opt, TensorDataset(x, y), loss_fn=LOSS, progress=False),
             ConfigurationError, r"looks like a Dataset: wrap it, e\.g\. DataLoader", model, opt, steps, before)


def test_numpy_scalars_are_numbers_everywhere() -> None:
    model, opt, _, before = _setup()
    result = autolr.lr_find(model, opt, tasks.batches(count=4), loss_fn=LOSS, num_steps=np.int64(20),
                            start_lr=np.float32(1e-6), end_lr=np.float64(1.0), accumulation_steps=np.int32(1),
                            max_grad_norm=np.float64(5.0), divergence_factor=np.float64(4), smoothing=np.float64(0.9),
                            check_every=np.int64(4), progress=False)
    assert result.curve.num_steps == 20 and type(result.settings["num_steps"]) is int
    json.dumps(result.to_dict())  # plain Python numbers: serialisable
    tasks.assert_same_state(before, tasks.full_state(model, opt))
    per_group = autolr.lr_find(model, opt, tasks.batches(count=4), loss_fn=LOSS, num_steps=10,
                               start_lr=np.array([1e-6]), progress=False)
    assert per_group.settings["start_lr"] == pytest.approx(1e-6)
    tuner = AutoLR(model, opt, schedule="warmup_cosine", weight_decay=np.float64(0.01), guard=True,
                   guard_every=np.int64(5), min_confidence=np.float64(0.0), warmup_steps=np.int64(2), progress=False)
    plan = tuner.lr_find(tasks.batches(count=4), LOSS, total_steps=np.int64(30), num_steps=np.int64(20))
    assert plan.total_steps == 30 and plan.weight_decay == 0.01
    json.dumps(tuner.state_dict())


def test_autolr_unknown_arguments_are_refused_at_construction_with_a_hint() -> None:
    model, opt, steps, before = _setup()
    _refused(lambda: AutoLR(model, opt, num_step=50), ConfigurationError, r"'num_step' \(did you mean 'num_steps'\?\)",
             model, opt, steps, before)
    _refused(lambda: AutoLR(model, opt, total_steps=100), ConfigurationError,
             r"'total_steps' \(pass it to tuner\.lr_find", model, opt, steps, before)


def _order(loader: DataLoader) -> list[float]:
    return [float(v) for x, _ in loader for v in x[:, 0]]


@pytest.mark.parametrize("where", ["dataloader", "sampler"])
def test_the_loaders_own_generator_is_put_back(where: str) -> None:
    """The next epoch's order after lr_find is the order it would have been without it."""
    x, y = tasks.classification_data(96, seed=3)
    data = TensorDataset(x, y)

    def make() -> tuple[DataLoader, torch.Generator]:
        g = torch.Generator().manual_seed(7)
        if where == "dataloader":
            return DataLoader(data, batch_size=16, shuffle=True, generator=g), g
        return DataLoader(data, batch_size=16, sampler=RandomSampler(data, generator=g)), g

    untouched, _ = make()
    expected = _order(untouched)
    loader, g = make()
    state = g.get_state()
    model, opt, _, _ = _setup()
    autolr.lr_find(model, opt, loader, loss_fn=LOSS, num_steps=20, val_loader=loader, val_batches=2, progress=False)
    assert torch.equal(g.get_state(), state)
    assert _order(loader) == expected


_BAD_NUMBERS = {
    "num_steps": st.one_of(st.integers(max_value=1), st.floats(allow_nan=True), st.just("100"), st.just(True)),
    "end_lr": st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.just("1")),
    "start_lr": st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(100.0), st.just([1e-7, 1e-7])),
    "accumulation_steps": st.one_of(st.integers(max_value=0), st.floats(0.5, 3.5), st.just(None)),
    "max_grad_norm": st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just("1")),
    "divergence_factor": st.one_of(st.floats(max_value=1.0), st.just(math.inf)),
    "smoothing": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), st.just(math.nan)),
    "check_every": st.one_of(st.integers(max_value=0), st.just(2.0)),
    "val_batches": st.one_of(st.integers(max_value=0), st.just(1.5)),
    "mode": st.text(max_size=12).filter(lambda m: m not in ("exponential", "linear")),
    "snapshot": st.text(max_size=8).filter(lambda m: m not in ("cpu", "disk")),
    "keyboard_interrupt": st.text(max_size=8).filter(lambda m: m not in ("raise", "stop")),
    "method": st.text(max_size=12).filter(lambda m: m not in autolr.suggest.STRATEGIES),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_any_bad_argument_is_an_autolr_error_before_any_step(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_BAD_NUMBERS)))
    value = data.draw(_BAD_NUMBERS[name])
    model, opt, steps, before = _setup()
    extra = {"val_loader": tasks.batches(count=2)} if name == "val_batches" else {}
    with pytest.raises(AutoLRError):
        autolr.lr_find(model, opt, tasks.batches(count=2), loss_fn=LOSS, progress=False, **{name: value}, **extra)
    assert not steps
    tasks.assert_same_state(before, tasks.full_state(model, opt))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "gpu0"}, "device must be a torch.device"),
        ({"scaler": 1}, "scaler must be a torch.amp.GradScaler"),
        ({"autocast_dtype": "bf16"}, "autocast_dtype must be a torch.dtype"),
        ({"val_loader": 5}, "val_loader must be an iterable"),
        ({"apply": "yes"}, "apply must be True or False"),
        ({"progress": "no"}, "progress must be None"),
        ({"reporters": [1]}, r"reporters\[0\] is a int, not a Reporter"),
        ({"reporters": autolr.Reporter()}, r"wrap it: reporters=\[reporter\]"),
    ],
)
def test_lr_find_arguments_around_the_step_are_checked_before_any_step(kwargs: dict, match: str) -> None:
    model, opt, steps, before = _setup()
    _refused(lambda: autolr.lr_find(model, opt, tasks.batches(count=2), loss_fn=LOSS, num_steps=10, **kwargs),
             ConfigurationError, match, model, opt, steps, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight_decay": "sweep", "weight_decay_grid": []}, "weight_decay_grid must be a non-empty list"),
        ({"weight_decay": "sweep", "weight_decay_grid": [-1.0, 0.1]}, "weight_decay_grid"),
        ({"warmup_steps": -3}, "warmup_steps must be None"),
        ({"wandb": "yes"}, "wandb must be True, False or a dict"),
        ({"reporters": [object()]}, "not a Reporter"),
        ({"progress": 1}, "progress must be None"),
    ],
)
def test_autolr_arguments_are_checked_before_the_groups_are_split(kwargs: dict, match: str) -> None:
    model, opt, steps, before = _setup()
    _refused(lambda: AutoLR(model, opt, **kwargs), ConfigurationError, match, model, opt, steps, before)
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epochs": 0}, "epochs must be None or an integer >= 1, got 0"), ({"epochs": 1.5}, "epochs"),
     ({"epochs": 2, "steps_per_epoch": 0}, "steps_per_epoch must be None or an integer >= 1")],
)
def test_autolr_run_length_is_checked_by_name_before_any_step(kwargs: dict, match: str) -> None:
    model, opt, steps, _ = _setup()
    tuner = AutoLR(model, opt, schedule="onecycle", progress=False)
    before = tasks.full_state(model, opt)
    _refused(lambda: tuner.lr_find(tasks.batches(count=2), LOSS, **kwargs), ConfigurationError, match,
             model, opt, steps, before)


def test_observe_end_epoch_apply_and_load_state_dict_name_what_is_wrong() -> None:
    model, opt, _, _ = _setup()
    tuner = AutoLR(model, opt, schedule="plateau", weight_decay=None, progress=False)
    tuner.lr_find(tasks.batches(count=4), LOSS, num_steps=20)
    with pytest.raises(ConfigurationError, match=r"shape \(3,\); pass the reduced loss"):
        tuner.observe(torch.ones(3))
    with pytest.raises(ConfigurationError, match="must be a number or a scalar tensor"):
        tuner.observe("0.5")
    tuner.observe({"loss": torch.tensor(0.5)})  # Lightning's training_step output
    tuner.observe(np.float32(0.5))
    with pytest.raises(ConfigurationError, match="val_loss must be a number"):
        tuner.end_epoch(val_loss="low")
    assert tuner.epoch == 0  # the bad call did not count an epoch
    tuner.end_epoch(val_loss=np.float64(0.3))
    assert tuner.epoch == 1
    result = tuner.result
    assert result is not None
    with pytest.raises(ConfigurationError, match="That is a model"):
        result.apply(model)
    with pytest.raises(autolr.StateError, match=r"state must be the dict AutoLR\.state_dict"):
        AutoLR(model, opt, weight_decay=None, progress=False).load_state_dict(None)  # type: ignore[arg-type]


def test_a_second_autolr_on_the_same_optimizer_takes_over_and_says_so() -> None:
    """Re-running a notebook cell: only the newest AutoLR steps the LR (the old one is detached, with a warning)."""
    model, opt, _, _ = _setup()
    first = AutoLR(model, opt, schedule="constant", weight_decay=None, progress=False)
    first.lr_find(tasks.batches(count=4), LOSS, total_steps=10, num_steps=20)
    second = AutoLR(model, opt, schedule="linear", weight_decay=None, progress=False)
    with pytest.warns(autolr.AutoLRWarning, match="another AutoLR was driving this optimizer"):
        second.lr_find(tasks.batches(count=4), LOSS, total_steps=10, num_steps=20)
    for x, y in tasks.batches(count=3):
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
    assert first.step == 0 and second.step == 3
    assert len(opt._optimizer_step_post_hooks) == 1
