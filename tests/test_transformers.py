"""autolr.integrations.transformers.AutoLRCallback with the real Hugging Face Trainer (tiny models, CPU).

Models are built from configs (a 2-layer GPT-2 language model and a 2-layer BERT classifier, byte-level ids
from the Python documentation that ships with the interpreter): nothing is downloaded. The checks:

* the callback's run is exactly a plain Trainer run at the LR it found (LRs, losses, weights: the range test
  restores everything, and HF's own schedule is moved to the new peak);
* the sweep runs the Trainer's own step (a ``compute_loss`` override, gradient accumulation, clipping);
* ``schedule="auto"``: the plan's schedule drives the Trainer's LambdaLR;
* a flat-curve guess is not applied to the model (HF's ``learning_rate`` kept, with a warning);
* resuming from a checkpoint: no new range test, the same LR trajectory and losses;
* ``report_to="wandb"`` (offline): autolr logs into HF's run, on HF's rows, and ``evaluate()`` logs fine after;
* ``torchrun --nproc_per_node=2`` (gloo): both ranks get the same LR and end with the same weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import autolr  # noqa: E402
from autolr.errors import AutoLRWarning, ConfigurationError  # noqa: E402
from autolr.integrations.transformers import AutoLRCallback  # noqa: E402
from autolr.report import Reporter  # noqa: E402
from autolr.suggest import FLAT_CONFIDENCE, Suggestion  # noqa: E402

SEQ = 32


@pytest.fixture(autouse=True)
def _quiet_and_fresh() -> Any:
    from accelerate.state import AcceleratorState, GradientState

    transformers.utils.logging.set_verbosity_error()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _text_ids() -> torch.Tensor:
    import pydoc_data.topics

    text = " ".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)).encode()
    return torch.tensor(list(text[:60_000]), dtype=torch.long)


def lm_data(n: int = 48) -> list[dict[str, torch.Tensor]]:
    ids = _text_ids()
    return [{"input_ids": ids[i:i + SEQ], "labels": ids[i:i + SEQ]} for i in range(0, n * SEQ, SEQ)]


def gpt2() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=256, n_positions=SEQ, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def bert_classifier() -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=260, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, max_position_embeddings=SEQ, num_labels=2)
    return transformers.BertForSequenceClassification(config)


def classification_data(n: int = 48) -> list[dict[str, torch.Tensor]]:
    ids = _text_ids()
    rows = []
    for i in range(n):
        chunk = ids[i * SEQ:(i + 1) * SEQ]
        rows.append({"input_ids": chunk, "labels": torch.tensor(int((chunk == 32).sum() > SEQ // 6))})
    return rows


def args(out: Path, **kwargs: Any) -> Any:
    base = dict(output_dir=str(out), per_device_train_batch_size=4, max_steps=12, logging_steps=1, report_to=[],
                save_strategy="no", use_cpu=True, disable_tqdm=True, warmup_steps=3, seed=1, learning_rate=5e-5)
    return transformers.TrainingArguments(**{**base, **kwargs})


class Record(transformers.TrainerCallback):
    """What the training did: the LR of every group at every optimizer step, and HF's logs."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.losses: list[float] = []
        self.at_begin: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **kw: Any) -> None:
        from accelerate.state import GradientState

        gs = GradientState()  # what the range test (in a callback before this one) must have left as it was
        self.at_begin = (len(gs.dataloader_references), gs.active_dataloader is None, gs.sync_gradients,
                         train_dataloader.iteration, train_dataloader.end_of_dataloader)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kw: Any) -> None:
        self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def train(model: Any, training_args: Any, callbacks: list[Any], data: Any = None, trainer_cls: Any = None,
          **kwargs: Any) -> tuple[Any, Record]:
    record = Record()
    cls = trainer_cls or transformers.Trainer
    trainer = cls(model=model, args=training_args, train_dataset=data if data is not None else lm_data(),
                  callbacks=[*callbacks, record], **kwargs)
    return trainer, record


def run(model: Any, training_args: Any, callbacks: list[Any], resume: str | None = None, **kwargs: Any
        ) -> tuple[Any, Record]:
    trainer, record = train(model, training_args, callbacks, **kwargs)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, record


def test_callback_run_is_exactly_a_plain_run_at_the_found_lr(tmp_path: Path) -> None:
    tune = AutoLRCallback(num_steps=40, min_confidence=0)
    tuned, tuned_record = run(gpt2(), args(tmp_path / "a", gradient_accumulation_steps=2), [tune])
    plan = tune.plan
    assert plan is not None and tune.result is not None and tuned.state.global_step == 12
    assert plan.peak_lr == tune.result.suggestion.lr != 5e-5
    assert plan.schedule_name == "hf:linear"
    assert "lr_scheduler_type='linear', warmup 3 of 12 steps" in plan.decision("schedule").reason
    assert "TrainingArguments.weight_decay=0" in plan.decision("weight_decay").reason
    assert tuned.lr_scheduler.base_lrs == [plan.peak_lr] * 2
    # a plain Trainer told that LR: the same LRs, losses and weights, to the last bit
    from accelerate.state import GradientState

    GradientState._reset_state()  # a singleton: the first Trainer's loop left its loader in it
    plain, plain_record = run(gpt2(), args(tmp_path / "b", gradient_accumulation_steps=2,
                                           learning_rate=plan.peak_lr), [])
    assert tuned_record.lrs == plain_record.lrs and max(lr for lr, _ in tuned_record.lrs) == plan.peak_lr
    assert tuned_record.losses == plain_record.losses
    for (name, p), q in zip(tuned.model.named_parameters(), plain.model.parameters()):
        assert torch.equal(p, q), name
    assert tuned_record.at_begin == plain_record.at_begin


def test_a_second_sweep_still_leaves_a_plain_run_at_the_found_lr(tmp_path: Path, monkeypatch) -> None:
    """A fine-tune's flat sweep run a second time (forced here: this model's curve is clear) through HF's step:
    the run is still bit for bit a plain Trainer run at the peak found. The second sweep (60 steps of 12 batches)
    ends on an epoch's last batch: the loader's end_of_dataloader, never set before, is not left behind."""
    from accelerate.state import GradientState

    monkeypatch.setattr("autolr.suggest.needs_resweep", lambda lrs, losses: True)
    tune = AutoLRCallback(num_steps=20, min_confidence=0, finetune=True)
    tuned, tuned_record = run(gpt2(), args(tmp_path / "a"), [tune])
    assert tune.result.settings["swept_twice"] and tune.result.curve.num_steps == 60
    GradientState._reset_state()
    plain, plain_record = run(gpt2(), args(tmp_path / "b", learning_rate=tune.plan.peak_lr), [])
    assert tuned_record.lrs == plain_record.lrs and tuned_record.losses == plain_record.losses
    for (name, p), q in zip(tuned.model.named_parameters(), plain.model.parameters()):
        assert torch.equal(p, q), name
    assert tuned_record.at_begin == plain_record.at_begin


def test_a_fine_tunes_peak_follows_the_trainers_schedule(tmp_path: Path) -> None:
    from accelerate.state import GradientState

    linear = AutoLRCallback(num_steps=40, min_confidence=0, finetune=True)
    trainer, _ = run(gpt2(), args(tmp_path / "a"), [linear])
    s, plan = linear.result.suggestion, linear.plan
    cap = s.evidence.get("divergence_lr", float("inf")) / 4
    assert s.finetune and plan.peak_lr == pytest.approx(max(min(2 * s.lr, cap), s.lr), rel=1e-12)
    assert plan.peak_lr > s.lr
    assert "fine-tune under warmup + decay" in plan.decision("lr").reason and plan.schedule_name == "hf:linear"
    assert trainer.lr_scheduler.base_lrs == [plan.peak_lr] * 2
    GradientState._reset_state()
    flat = AutoLRCallback(num_steps=40, min_confidence=0, finetune=True)
    run(gpt2(), args(tmp_path / "b", lr_scheduler_type="constant_with_warmup"), [flat])
    assert flat.plan.peak_lr == flat.result.suggestion.lr and flat.plan.schedule_name == "hf:constant_with_warmup"


def test_the_sweep_runs_the_trainers_own_step(tmp_path: Path) -> None:
    calls: dict[str, Any] = {"loss": 0, "clip": 0}

    class MyTrainer(transformers.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            calls["loss"] += 1
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _clip_grad_norm(self, model):
            calls["clip"] += 1
            return super()._clip_grad_norm(model)

    tune = AutoLRCallback(num_steps=30, min_confidence=0)

    class Before(transformers.TrainerCallback):
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            if "sweep" not in calls:
                calls["sweep"] = dict(calls)

    model = bert_classifier()  # accelerate wraps the model's forward in its bf16 autocast
    model.bert.encoder.register_forward_pre_hook(
        lambda *_: calls.__setitem__("autocast", torch.is_autocast_enabled("cpu")))
    trainer, _ = run(model, args(tmp_path, gradient_accumulation_steps=3, max_steps=4, max_grad_norm=0.5,
                                             bf16=True), [tune, Before()], data=classification_data(),
                     trainer_cls=MyTrainer)
    sweep = calls["sweep"]
    steps = len(tune.result.curve)
    assert sweep["clip"] >= steps and sweep["loss"] == 3 * sweep["clip"]  # 3 micro-batches per step, clipped
    assert sweep["autocast"] is True
    assert tune.result.settings["step"] == "train_step"
    assert trainer.state.global_step == 4 and calls["clip"] == sweep["clip"] + 4


def test_schedule_auto_drives_the_trainers_lambda_lr_with_the_plan(tmp_path: Path) -> None:
    tune = AutoLRCallback(schedule="auto", num_steps=40, min_confidence=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, record = run(gpt2(), args(tmp_path, max_steps=20), [tune])
    plan = tune.plan
    assert plan.schedule_name == "warmup_cosine"
    assert "replaces the Trainer's lr_scheduler_type='linear'" in plan.decision("schedule").reason
    expected = [base * plan.schedule(t) for t in range(20) for base in plan.lrs]
    assert [lr for lrs in record.lrs for lr in lrs] == pytest.approx(expected, rel=1e-12, abs=0)
    assert record.lrs[0][0] > 0  # the plan's warmup never runs a step at LR 0


def test_a_flat_curve_guess_keeps_the_trainers_learning_rate(tmp_path: Path, monkeypatch) -> None:
    flat = Suggestion(3e-3, "default", FLAT_CONFIDENCE, "flat curve; a guess 20x below the divergence at 6e-02")
    monkeypatch.setattr(autolr.suggest, "suggest", lambda *a, **k: flat)
    tune = AutoLRCallback(num_steps=20)
    with pytest.warns(AutoLRWarning, match=r"keeps learning_rate=5e-05: .*under min_confidence 0.1.*flat curve"):
        _, record = run(gpt2(), args(tmp_path), [tune])
    assert tune.plan.peak_lr == 5e-5 and max(lr for lr, _ in record.lrs) == pytest.approx(5e-5, rel=1e-12)
    applied = AutoLRCallback(num_steps=20, min_confidence=0)
    _, record = run(gpt2(), args(tmp_path / "applied"), [applied])
    assert applied.plan.peak_lr == 3e-3 and max(lr for lr, _ in record.lrs) == pytest.approx(3e-3, rel=1e-12)


@pytest.mark.parametrize(("schedule", "rebuild"), [("hf", False), ("auto", True)])
def test_resume_needs_no_new_range_test_and_follows_the_same_trajectory(tmp_path: Path, monkeypatch,
                                                                        schedule: str, rebuild: bool) -> None:
    options = dict(max_steps=10, save_strategy="steps", save_steps=5, restore_callback_states_from_checkpoint=rebuild)
    first = AutoLRCallback(schedule=schedule, num_steps=30, min_confidence=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, full = run(gpt2(), args(tmp_path, **options), [first])
    saved = json.loads((tmp_path / "checkpoint-5" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["AutoLRCallback"]["attributes"]["saved_state"]["plan"]["peak_lr"] == (
        first.plan.peak_lr)

    def no_range_test(*a: Any, **k: Any) -> None:
        raise AssertionError("a resumed run must not run a new range test")

    monkeypatch.setattr("autolr.integrations.transformers.lr_find", no_range_test)
    second = AutoLRCallback(schedule=schedule, num_steps=30, min_confidence=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer, resumed = run(gpt2(), args(tmp_path, **options), [second], resume=str(tmp_path / "checkpoint-5"))
    assert trainer.state.global_step == 10
    assert resumed.lrs == full.lrs[5:] and resumed.losses == full.losses[5:]
    active = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, AutoLRCallback))
    assert (active is not second) == rebuild  # restore_callback_states_from_checkpoint builds a new one
    assert active.plan.to_dict() == first.plan.to_dict()


def test_report_to_wandb_logs_into_the_trainers_run_without_moving_its_steps(tmp_path: Path, wandb_dir: Path
                                                                              ) -> None:
    import wandb

    from tests.wandb_reader import find_run_dir, read_run

    tune = AutoLRCallback(num_steps=30, min_confidence=0)
    trainer, _ = train(gpt2(), args(tmp_path / "out", report_to=["wandb"], logging_steps=2, max_steps=8), [tune],
                       eval_dataset=lm_data(8))
    trainer.train()
    run_ = wandb.run
    assert run_ is not None, "autolr must not finish the run Hugging Face manages"
    metrics = trainer.evaluate()  # logs into the same run after training
    assert "eval_loss" in metrics
    run_.finish()  # the run's owner (here: the user, as HF never finishes it) ends it
    data = read_run(find_run_dir(wandb_dir))
    steps = [row["_step"] for row in data.history]
    assert steps == list(range(len(steps))) and data.exit_code == 0
    train_rows = [row for row in data.history if "train/loss" in row]
    assert [row["train/global_step"] for row in train_rows] == [2, 4, 6, 8]  # every HF row, none added
    assert len(data.history) == 4 + 2  # + HF's train summary row and its eval row: autolr commits no row
    assert any("eval/loss" in row for row in data.history)
    assert all(row.get("autolr/lr/group0") for row in train_rows)  # the LR each logged step ran at
    assert train_rows[-1]["autolr/lr/group0"] == pytest.approx(tune.plan.peak_lr * 1 / 5, rel=1e-6)  # step 8 of 8
    assert "autolr/range_test/curve" in data.history[0] and "autolr/decisions" in data.history[0]
    assert data.summary["autolr/suggested_lr"] == pytest.approx(tune.result.suggestion.lr)
    assert data.summary["autolr/decision/schedule"] == "hf:linear"


def test_arguments_the_trainer_owns_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="gradient_accumulation_steps"):
        AutoLRCallback(accumulation_steps=2)
    with pytest.raises(ConfigurationError, match=r"TrainingArguments\.weight_decay"):
        AutoLRCallback(weight_decay=0.1)
    with pytest.raises(ConfigurationError, match="unknown argument 'num_step'"):
        AutoLRCallback(num_step=10)
    with pytest.raises(ConfigurationError, match="plateau"):
        AutoLRCallback(schedule="plateau")
    with pytest.raises(ConfigurationError, match="min_confidence"):
        AutoLRCallback(min_confidence=2)
    assert AutoLRCallback(num_steps=10).state()["args"]["num_steps"] == 10


class Calls(Reporter):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def range_test_end(self, result: Any) -> None:
        self.calls.append("range_test_end")

    def decisions(self, decisions: Any) -> None:
        self.calls.append("decisions")


def _ddp_job(out: str) -> None:
    """One rank of the torchrun test: tune and train, then write what this rank saw."""
    import faulthandler

    faulthandler.dump_traceback_later(120, exit=True)  # a hung rank prints where it is and ends
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    rank = int(os.environ["RANK"])
    calls = Calls()
    tune = AutoLRCallback(num_steps=30, min_confidence=0, reporters=[calls])
    training = transformers.TrainingArguments(output_dir=out, per_device_train_batch_size=4, max_steps=6,
                                              report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                                              warmup_steps=1, seed=1, ddp_backend="gloo", logging_steps=1)
    trainer = transformers.Trainer(model=gpt2(), args=training, train_dataset=lm_data(), callbacks=[tune])
    trainer.train()
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "peak": tune.plan.peak_lr, "curve": list(map(float, tune.result.curve.losses)), "calls": calls.calls,
        "world": trainer.args.world_size, "weights": weights[:50].tolist(), "sum": float(weights.double().sum()),
    }))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.distributed
def test_torchrun_two_processes_agree_and_only_the_main_one_reports(tmp_path: Path) -> None:
    import signal

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", __file__, str(tmp_path)]
    log = tmp_path / "torchrun.log"
    with log.open("w") as sink:  # a file, not a pipe: a stray rank can never block the test on it
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            proc.terminate()  # torchrun stops its workers on SIGTERM (they run in their own sessions)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            pytest.fail(f"torchrun timed out:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, log.read_text()[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    assert ranks[0]["peak"] == ranks[1]["peak"] and ranks[0]["curve"] == ranks[1]["curve"]
    assert ranks[0]["weights"] == ranks[1]["weights"] and ranks[0]["sum"] == ranks[1]["sum"]
    assert ranks[0]["calls"] == ["range_test_end", "decisions"] and ranks[1]["calls"] == []


if __name__ == "__main__":
    _ddp_job(sys.argv[1])
