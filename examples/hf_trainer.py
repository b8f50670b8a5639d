"""Fine-tuning with the Hugging Face Trainer, the learning rate found by one callback (marked ``# autolr``).

Run it with::

    pip install "torch-autolr[transformers]"
    python examples/hf_trainer.py

Nothing is downloaded. A tiny GPT-2 (2 layers, byte-level vocabulary) is first pretrained for about half a
minute on English prose: the Python documentation that ships with the interpreter (``pydoc_data``). It is then
fine-tuned on a shifted domain, Python source code from the standard library, with the same ``TrainingArguments``
(linear decay after a 10 % warmup, ``max_grad_norm=1.0``, ``gradient_accumulation_steps=2``, weight decay 0.01):

1. Hugging Face's default ``learning_rate=5e-5``;
2. ``AutoLRCallback()``: the range test runs through the Trainer's own step and the LR found moves the peak of
   HF's own schedule. The model is read as trained (its LayerNorm scales moved), so the flat curve usual on a
   pretrained model is swept again, 3x longer, and that sweep is read like any sweep (here it shows a clear
   descent: 1.2e-3, confidence 0.45); HF's linear schedule decays to 0, so its peak is twice that LR (2.4e-3). A
   fresh model's flat-curve guess (confidence 0.05) would *not* be applied: the Trainer would keep
   ``learning_rate``, with a warning;
3. ``AutoLRCallback(min_confidence=0)``: whatever was suggested is applied, guesses included;
4. ``AutoLRCallback(schedule="auto", min_confidence=0)``: the plan's schedule (warmup + cosine) takes over too.

The script prints each decision with its reason and the held-out loss of every run. About 70 s on an idle
2-core CPU (half of it the pretraining).
"""

from __future__ import annotations

import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from autolr.integrations.transformers import AutoLRCallback  # autolr

SEQ = 64


def byte_chunks(text: bytes, n: int, offset: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` windows of ``SEQ`` bytes: the model predicts every next byte (labels = inputs, HF shifts them)."""
    ids = torch.tensor(list(text), dtype=torch.long)
    step = max(1, (len(ids) - SEQ - offset) // n)
    return [{"input_ids": ids[offset + i * step:offset + i * step + SEQ],
             "labels": ids[offset + i * step:offset + i * step + SEQ]} for i in range(n)]


def prose() -> bytes:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return " ".join(topics[k] for k in sorted(topics)).encode("ascii", "ignore")


def code() -> bytes:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / name for name in ("json/decoder.py", "json/encoder.py", "csv.py", "textwrap.py",
                                        "fractions.py", "heapq.py", "bisect.py", "string.py")]
    return "\n".join(f.read_text(errors="ignore") for f in files if f.exists()).encode("ascii", "ignore")


def arguments(out: str, **kwargs: object) -> TrainingArguments:
    base = dict(output_dir=out, per_device_train_batch_size=16, report_to=[], save_strategy="no", use_cpu=True,
                disable_tqdm=True, logging_strategy="no", seed=0, dataloader_drop_last=True)
    return TrainingArguments(**{**base, **kwargs})


def main() -> None:
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    out = tempfile.mkdtemp(prefix="autolr-hf-")
    text, source = prose(), code()

    # -- pretraining (the model a user would download) -------------------------------------------------
    started = time.perf_counter()
    config = GPT2Config(vocab_size=256, n_positions=SEQ, n_embd=64, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0)
    model = GPT2LMHeadModel(config)
    pretrain = arguments(f"{out}/pretrain", learning_rate=3e-3, max_steps=600, warmup_steps=20,
                         lr_scheduler_type="cosine", weight_decay=0.01)
    Trainer(model=model, args=pretrain, train_dataset=byte_chunks(text, 9600)).train()
    model.save_pretrained(f"{out}/pretrained")
    print(f"pretrained on {len(text) // 1000} kB of prose in {time.perf_counter() - started:.0f}s")

    # -- fine-tuning on code: same TrainingArguments, three ways ---------------------------------------
    train_set, held_out = byte_chunks(source[:-20_000], 640), byte_chunks(source[-20_000:], 64)
    base_model = GPT2LMHeadModel.from_pretrained(f"{out}/pretrained")
    before = Trainer(model=base_model, args=arguments(f"{out}/eval"), eval_dataset=held_out).evaluate()["eval_loss"]
    print(f"held-out loss on code before fine-tuning: {before:.3f}\n")

    def fine_tune(name: str, callbacks: list[object]) -> float:
        started = time.perf_counter()
        model = GPT2LMHeadModel.from_pretrained(f"{out}/pretrained")
        args = arguments(f"{out}/{name}", max_steps=60, warmup_steps=0.1, gradient_accumulation_steps=2,
                         per_device_train_batch_size=8, weight_decay=0.01)  # HF's defaults otherwise
        trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=held_out,
                          callbacks=callbacks)
        trainer.train()
        loss = trainer.evaluate()["eval_loss"]
        print(f"{name}: held-out loss {loss:.3f} ({time.perf_counter() - started:.0f}s)\n")
        return loss

    results = {"HF default learning_rate=5e-5": fine_tune("HF default learning_rate=5e-5", [])}
    for name, tune in (
        ("AutoLRCallback()", AutoLRCallback(progress=False)),  # autolr: one line
        ("AutoLRCallback(min_confidence=0)", AutoLRCallback(min_confidence=0, progress=False)),
        ('AutoLRCallback(schedule="auto", min_confidence=0)',
         AutoLRCallback(schedule="auto", min_confidence=0, progress=False)),
    ):
        results[name] = fine_tune(name, [tune])
        print_plan(tune)
    print(f"held-out loss on code: before fine-tuning {before:.3f}")
    for name, loss in results.items():
        print(f"  {name:<52} {loss:.3f}")


def print_plan(tune: AutoLRCallback) -> None:
    s = tune.result.suggestion
    print(f"  range test: suggested {s.lr:.2e} ({s.method}, confidence {s.confidence:.2f})")
    for d in tune.plan.decisions:
        value = f"{d.value:.2e}" if isinstance(d.value, float) else d.value
        print(f"  {d.name}: {value}: {d.reason}")
    print()


if __name__ == "__main__":
    sys.exit(main())
