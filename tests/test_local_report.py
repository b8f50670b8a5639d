"""The local report (report.html, curve.png, result.json) and the matplotlib plot of a range test."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from autolr import AutoLRWarning, Curve, Decision, LRFindResult, Suggestion
from autolr.local_report import LocalReportReporter, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LR = 3.2e-3


def make_result(lr: float | None = LR, reason: str = "steepest <stable> descent & no spikes") -> LRFindResult:
    lrs = np.geomspace(1e-5, 1.0, 40)
    x = np.log10(lrs)
    losses = 2.0 - 1.0 / (1.0 + np.exp(-2.0 * (x + 3.0)))  # descends from 2 to ~1 around 1e-3
    losses[-4:] = [3.0, 8.0, 40.0, np.nan]  # diverged tail, ending in a NaN
    curve = Curve(lrs, losses, stop_reason="diverged", num_steps=40)
    suggestion = Suggestion(
        lr,
        "steepest",
        0.8,
        reason,
        alternatives={"minimum": 3e-2, "valley": 1e-3, "fastai_steep": None},
        evidence={"min_loss_lr": 3e-2, "loss_drop": 0.9},
    )
    return LRFindResult(curve, suggestion, initial_lrs=(0.1,), settings={"start_lr": 1e-5, "end_lr": 1.0})


DECISIONS = [
    Decision("lr", LR, "suggestion / 1 <kept>", alternatives={"minimum": 3e-2}, evidence={"loss_drop": 0.9}),
    Decision("schedule", "onecycle", "warmup then 'cosine' decay", alternatives={"constant": "constant"}),
    Decision("guard", "halve lr", "loss spiked 5x", evidence={"loss": 9.5}, step=120),
]


# -- write_report -------------------------------------------------------------------------------------
def test_report_files_html_json_png(tmp_path):
    result = make_result()
    path = write_report(result, tmp_path / "report", decisions=DECISIONS)

    assert path == tmp_path / "report" / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "3.20e-03" in page  # the suggestion value
    assert "steepest &lt;stable&gt; descent &amp; no spikes" in page  # reason, escaped
    assert "<stable>" not in page
    assert "suggestion / 1 &lt;kept&gt;" in page and "warmup then &#x27;cosine&#x27; decay" in page
    assert "loss spiked 5x" in page and "halve lr" in page and ">120<" in page  # guard decision with its step
    assert "diverged" in page  # stop reason
    for name in ("minimum", "valley", "fastai_steep"):
        assert name in page
    assert "data:image/png;base64," in page  # self-contained

    assert (tmp_path / "report" / "curve.png").read_bytes()[:8] == PNG_MAGIC
    loaded = LRFindResult.load(tmp_path / "report" / "result.json")
    assert loaded.suggestion == result.suggestion
    np.testing.assert_allclose(loaded.curve.lrs, result.curve.lrs)
    np.testing.assert_allclose(loaded.curve.losses[:-1], result.curve.losses[:-1])
    assert np.isnan(loaded.curve.losses[-1]) and loaded.curve.stop_reason == "diverged"


def test_report_without_suggestion(tmp_path):
    page = write_report(make_result(lr=None, reason="loss never fell: lower start_lr"), tmp_path).read_text()
    assert "No learning rate suggested." in page and "loss never fell: lower start_lr" in page


def test_report_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = write_report(make_result(), tmp_path)
    page = path.read_text()
    assert not (tmp_path / "curve.png").exists()
    assert "No curve image" in page and "torch-autolr[plot]" in page
    assert "3.20e-03" in page and (tmp_path / "result.json").exists()


def test_result_save_report_delegates(tmp_path):
    path = make_result().save_report(tmp_path, decisions=DECISIONS[:1])
    assert path.name == "report.html" and "suggestion / 1 &lt;kept&gt;" in path.read_text()


# -- LocalReportReporter ------------------------------------------------------------------------------
def test_reporter_writes_after_range_test_and_on_close(tmp_path):
    reporter = LocalReportReporter(tmp_path / "out")
    reporter.range_test_end(make_result())
    assert "3.20e-03" in (tmp_path / "out" / "report.html").read_text()
    assert "halve lr" not in (tmp_path / "out" / "report.html").read_text()

    reporter.decisions(DECISIONS)
    reporter.close()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "halve lr" in page and "onecycle" in page


def test_reporter_failure_warns_once_and_never_raises(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the report folder should go")
    reporter = LocalReportReporter(blocker)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.range_test_end(make_result())
        reporter.decisions(DECISIONS)
        reporter.close()
    assert [w.category for w in caught] == [AutoLRWarning]
    assert str(blocker) in str(caught[0].message)


# -- plot_curve ---------------------------------------------------------------------------------------
def test_plot_curve_log_axis_suggestion_line_and_limits():
    pytest.importorskip("matplotlib")
    from autolr.plotting import new_figure, plot_curve

    result = make_result()
    ax = plot_curve(result, ax=new_figure().add_subplot())

    assert ax.get_xscale() == "log"
    vertical = {line.get_label(): line.get_xdata() for line in ax.get_lines() if len(set(line.get_xdata())) == 1}
    (label,) = [k for k in vertical if k.startswith("suggested")]
    assert "3.20e-03" in label and list(vertical[label]) == [LR, LR]
    # alternatives, labelled by what the rule is (min-loss/10, not "minimum"); the None one skipped
    assert {"min-loss/10 rule 3.00e-02", "valley rule 1.00e-03"} <= set(vertical)
    assert "loss minimum at 3.00e-02" in [line.get_label() for line in ax.get_lines()]
    assert any("stop: diverged" in line.get_label() for line in ax.get_lines())
    bottom, top = ax.get_ylim()
    assert top < 3.0 and bottom < 1.05  # the diverged tail (3, 8, 40) is cut off, the minimum is visible
    assert "3.20e-03 suggested, confidence" in ax.get_title()


def test_plot_curve_alternatives_have_distinct_styles_and_say_what_each_rule_is():
    pytest.importorskip("matplotlib")
    from autolr.plotting import new_figure, plot_curve
    from autolr.suggest import suggest

    lrs = np.geomspace(1e-7, 10, 100)
    x = np.log10(lrs)
    losses = 0.5 + 2 / (1 + np.exp(2 * (x + 3.5))) + np.exp(4 * (x + 0.5))
    s = suggest(lrs, losses)
    assert set(s.alternatives) == {"steepest", "minimum", "valley"} and s.method == "default"
    ax = plot_curve(LRFindResult(Curve(lrs, losses), s), ax=new_figure().add_subplot())

    lines = {line.get_label(): line for line in ax.get_lines()}
    wanted = {
        "steepest-descent rule": s.alternatives["steepest"],
        "min-loss/10 rule": s.alternatives["minimum"],
        "valley rule": s.alternatives["valley"],
    }
    alternatives = []
    for rule, lr in wanted.items():
        (label,) = [k for k in lines if k.startswith(rule + " ")]
        assert label == f"{rule} {lr:.2e}" and list(lines[label].get_xdata()) == [lr, lr]
        alternatives.append(lines[label])
    suggested = next(line for k, line in lines.items() if k.startswith("suggested"))
    styles = {(line.get_color(), str(line.get_linestyle())) for line in [*alternatives, suggested]}
    assert len(styles) == 4  # every rule its own colour and line style, none like the suggestion
    assert len({line.get_color() for line in [*alternatives, suggested]}) == 4
    # the loss minimum and the divergence are marked as what they are, at the LRs the analysis found
    assert f"loss minimum at {s.evidence['min_loss_lr']:.2e}" in lines
    assert f"divergence at {s.evidence['divergence_lr']:.2e}" in lines
    assert s.alternatives["minimum"] == pytest.approx(s.evidence["min_loss_lr"] / 10)


def test_summary_says_what_the_minimum_rule_is():
    text = make_result().summary()
    assert "minimum (min-loss/10) 3.00e-02" in text


def test_plot_curve_of_a_flat_noisy_curve_shows_its_noise_band_and_the_low_confidence():
    pytest.importorskip("matplotlib")
    from autolr.plotting import new_figure, plot_curve
    from autolr.suggest import suggest

    lrs = np.geomspace(1e-7, 10, 100)
    rng = np.random.default_rng(3)
    losses = 1.0 + np.exp(np.minimum(4 * (np.log10(lrs) - 0.3), 30)) + 0.2 * rng.standard_normal(100)
    s = suggest(lrs, losses)
    assert s.confidence == 0.05  # the flat-curve tier
    cut = lrs < s.evidence["divergence_lr"]
    result = LRFindResult(Curve(lrs[cut], losses[cut], stop_reason="diverged", num_steps=100), s)
    ax = plot_curve(result, ax=new_figure().add_subplot())
    bottom, top = ax.get_ylim()
    band = np.percentile(losses[cut], [10, 90])
    assert bottom < band[0] and top > band[1]  # the noise band is visible, not a sliver around the first point
    assert top < 3.0
    assert "confidence 0.05" in ax.get_title()


def test_plot_curve_without_suggestion_says_why():
    pytest.importorskip("matplotlib")
    from autolr.plotting import new_figure, plot_curve

    reason = "the loss never decreased over the whole range; lower start_lr or check the data pipeline"
    ax = plot_curve(make_result(lr=None, reason=reason), ax=new_figure().add_subplot(), show_alternatives=False)
    title = ax.get_title()
    assert title.startswith("LR range test: no suggestion (the loss never decreased")
    assert title.endswith("…)") and len(title) < 90
    assert not [line for line in ax.get_lines() if line.get_label().startswith(("suggested", "min-loss"))]


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from autolr.plotting import plot_curve

    with pytest.raises(ImportError, match=r"pip install \"torch-autolr\[plot\]\""):
        plot_curve(make_result())
