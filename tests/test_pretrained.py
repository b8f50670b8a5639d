"""Reading whether a model starts trained (autolr.pretrained.detect), on real fresh and really trained models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from autolr import lr_find
from autolr.errors import ConfigurationError
from autolr.plan import make_plan
from autolr.pretrained import detect
from autolr.suggest import FINETUNE_FLAT_CONFIDENCE, Suggestion, suggest
from tests import tasks


def _train(model: nn.Module, inputs: torch.Tensor, steps: int = 30, lr: float = 1e-2) -> nn.Module:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        out = model(inputs)
        out = out[0] if isinstance(out, tuple) else out
        loss = out.float().pow(2).mean() + (out - 1).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _fresh_models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "mlp": (nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)), torch.randn(32, 16)),
        "cnn_bn": (nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, groups=2)),
                   torch.randn(8, 3, 10, 10)),
        "gru": (nn.GRU(8, 16, batch_first=True), torch.randn(4, 5, 8)),
        "lstm": (nn.LSTM(8, 16, num_layers=2, batch_first=True), torch.randn(4, 5, 8)),
        "transformer": (nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), torch.randn(4, 5, 16)),
        "conv_transpose": (nn.ConvTranspose2d(4, 6, 3), torch.randn(2, 4, 5, 5)),
    }


@pytest.mark.parametrize("name", list(_fresh_models()))
def test_fresh_models_read_fresh_and_trained_ones_trained(name: str) -> None:
    model, inputs = _fresh_models()[name]
    fresh = detect(model)
    assert not fresh.trained, fresh.reason
    _train(model, inputs)
    trained = detect(model)
    assert trained.trained, trained.reason
    expected = {"cnn_bn": "batchnorm_stats", "transformer": "norm_affine"}.get(name, "init_bound")
    assert trained.sign == expected
    assert "trained" in trained.reason


def test_only_trainable_layers_count_and_constant_norm_inits_read_fresh() -> None:
    body = _train(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64)), torch.randn(32, 16))
    assert detect(body).trained
    body.requires_grad_(False)  # a frozen pretrained body under a new head: the head trains from scratch
    model = nn.Sequential(body, nn.ReLU(), nn.Linear(64, 4))
    assert not detect(model).trained
    body.requires_grad_(True)
    assert detect(model).trained  # 2 of 3 weight tensors beyond the bound

    resnet_like = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                                nn.BatchNorm2d(8))
    nn.init.zeros_(resnet_like[4].weight)  # zero-init residual branch: a constant, still a fresh model
    assert not detect(resnet_like).trained

    custom = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    for layer in (custom[0], custom[2]):
        nn.init.xavier_normal_(layer.weight)  # documented limit: a wide custom init without norm layers
    assert detect(custom).sign == "init_bound" and "finetune=False" in detect(custom).reason


def test_lr_find_records_the_reading_and_obeys_the_override() -> None:
    torch.manual_seed(0)
    model = tasks.BNDropoutNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = tasks.batches(count=8)
    fresh = lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), num_steps=40, progress=False)
    assert fresh.settings["finetune"] is False and "fresh" in fresh.settings["finetune_sign"]
    tasks.train(model, opt, data, steps=60)
    trained = lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), num_steps=40, progress=False)
    assert trained.settings["finetune"] is True
    forced = lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), num_steps=40, progress=False, finetune=False)
    assert forced.settings["finetune"] is False and forced.settings["finetune_sign"] == "finetune=False given"
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigurationError, match="finetune must be None"):
        lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), finetune="yes")  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def _edge_curve(flat: bool) -> tuple[np.ndarray, np.ndarray]:
    """A fine-tune-like sweep: a flat (noisy) plateau or a clear dip, then a blow-up near 0.1."""
    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-7, 10, 100)
    x = np.log10(lrs)
    dip = 0.0 if flat else 0.8 / (1 + np.exp(3 * (x + 3.0)))
    losses = 1.2 + dip + np.exp(4 * (x + 1.0)) + rng.normal(0, 0.05 if flat else 0.01, x.size)
    return lrs, losses


def test_a_fine_tune_keeps_the_lr_and_reads_a_flat_curve_as_the_edge_not_a_guess() -> None:
    for flat in (True, False):
        lrs, losses = _edge_curve(flat)
        scratch, fine = suggest(lrs, losses), suggest(lrs, losses, finetune=True, finetune_reason="LayerNorm moved")
        assert not scratch.finetune and fine.finetune
        assert fine.lr is not None and fine.lr == scratch.lr  # the best rule measured on the fine-tuning suite too
        assert fine.reason.startswith("fine-tune (LayerNorm moved)")
        assert Suggestion.from_dict(fine.to_dict()) == fine
        if flat:  # the usual shape of a fine-tune: a reading, not a bare guess, and min_confidence=0.1 keeps it
            assert scratch.confidence < 0.1 < fine.confidence == FINETUNE_FLAT_CONFIDENCE < 0.2
            assert "a guess" in scratch.reason and "a guess" not in fine.reason
            kept = make_plan(fine, param_group_lrs=[1e-3], optimizer_name="AdamW", min_confidence=0.1)
            skipped = make_plan(scratch, param_group_lrs=[1e-3], optimizer_name="AdamW", min_confidence=0.1)
            assert kept.peak_lr == fine.lr and skipped.peak_lr == 1e-3
        else:
            assert fine.confidence == scratch.confidence
        assert suggest(lrs, losses, method="steepest", finetune=True).lr == suggest(lrs, losses, method="steepest").lr


def test_lr_find_on_a_trained_model_gives_a_fine_tune_suggestion() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = tasks.batches(count=8)
    fresh = lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), progress=False)
    tasks.train(model, opt, data, steps=80)
    trained = lr_find(model, opt, data, loss_fn=nn.CrossEntropyLoss(), progress=False)
    assert not fresh.suggestion.finetune and trained.suggestion.finetune
    assert "LayerNorm" in trained.suggestion.reason and trained.settings["finetune"] is True
    assert trained.suggestion.lr == suggest(trained.curve.lrs, trained.curve.losses).lr


def test_unreadable_weights_read_as_fresh_and_never_stop_the_test() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)).to("meta")
    state = detect(model)
    assert not state.trained and state.sign == "none" and "finetune=True" in state.reason
