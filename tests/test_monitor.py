"""The shared divergence rule and the lagged loss readers."""

from __future__ import annotations

import math

import pytest
import torch

from autolr.monitor import DivergenceRule, LossBuffer, LossStream


@pytest.mark.parametrize("offset", [0.0, -10.0])
def test_rule_detects_a_rise_for_positive_and_negative_losses(offset: float) -> None:
    rule = DivergenceRule(smoothing=0.0, factor=4.0)
    base = [2.0, 1.5, 1.0, 1.2, 2.0]  # best 1.0 (+offset); the limit is best + 3 * |best|
    assert [rule.update(v + offset) for v in base] == [None] * 5
    best = 1.0 + offset
    assert rule.update(best + 3 * abs(best) + 0.01) == "diverged"


def test_rule_reports_non_finite_values() -> None:
    rule = DivergenceRule(smoothing=0.9, factor=4.0)
    assert rule.update(1.0) is None
    assert rule.update(math.nan) == "non_finite" and rule.update(math.inf) == "non_finite"


def test_loss_buffer_analyses_one_check_late_and_stops_at_the_first_bad_point() -> None:
    buffer = LossBuffer(12, torch.device("cpu"), DivergenceRule(smoothing=0.0, factor=4.0))
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0]
    for i, v in enumerate(values, start=1):
        buffer.losses[i - 1] = v
        if i % 4 == 0:
            buffer.check(i)
            if i == 4:
                assert buffer.seen == 0  # nothing analysed yet: the first copy was only issued
            if i == 8:
                assert buffer.seen == 4 and buffer.stop_at is None  # the bad point at index 6 is not read yet
    buffer.flush(12)
    assert buffer.stop_at == 6 and buffer.reason == "diverged"


def test_loss_stream_returns_each_batch_one_batch_late() -> None:
    stream = LossStream(3)
    out = [stream.add(torch.tensor(float(s)), s) for s in range(1, 8)]
    assert [len(o) for o in out] == [0, 0, 0, 0, 0, 3, 0]
    assert out[5] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert stream.flush(7) == [(4, 4.0), (5, 5.0), (6, 6.0), (7, 7.0)]
