"""Framework callbacks: a real tiny training run of PyTorch Lightning and of transformers.Trainer
on CPU (random data, models built from a config, no download), each skipped with its reason
when the framework is not installed (``pip install -e ".[lightning,huggingface]"``)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import topoprof

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _hooks_on(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_importing_topoprof_imports_no_framework():
    code = (
        "import sys, topoprof, topoprof.integrations\n"
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'transformers', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------- Lightning
def _lightning():
    return pytest.importorskip("lightning.pytorch", reason="lightning is not installed (pip install topoprof[lightning])")


def _lit_module(pl, fail_at: int | None = None):
    class LitMLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            if fail_at is not None and batch_idx == fail_at:
                raise RuntimeError("boom in training_step")
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return LitMLP()


def _fit(pl, tmp_path, callback, model, max_steps: int, accumulate: int = 1):
    data = torch.utils.data.TensorDataset(torch.randn(256, 16), torch.randn(256, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = pl.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accumulate_grad_batches=accumulate, callbacks=[callback],
    )
    trainer.fit(model, loader)


@pytest.mark.filterwarnings("ignore")
def test_lightning_callback_profiles_optimizer_steps_with_accumulation(tmp_path):
    pl = _lightning()
    from topoprof.integrations.lightning import TopoprofCallback

    cb = TopoprofCallback(tmp_path / "lit", steps=3, skip_first=1, tensorboard=False)
    model = _lit_module(pl)
    _fit(pl, tmp_path, cb, model, max_steps=6, accumulate=2)
    run = topoprof.load(tmp_path / "lit")
    assert run.manifest.status == "complete"
    rank = run.rank()
    assert [s.index for s in rank.steps] == [1, 2, 3]
    # One step per optimizer step: two training batches each.
    assert all((s.forward_passes, s.backward_passes, s.optimizer_steps) == (2, 2, 1) for s in rank.steps)
    # The update inside optimizer.step(closure) is the optimizer phase, not "other".
    assert all(s.phases_us["optimizer"] > 0 and s.phases_us["forward"] > 0 for s in rank.steps)
    assert rank.module("").kind == "LitMLP" and rank.module("net.0").flops_fwd == 2 * 8 * 16 * 32
    assert _hooks_on(model) == 0


@pytest.mark.filterwarnings("ignore")
def test_lightning_exception_stops_the_profile_and_keeps_finished_steps(tmp_path):
    pl = _lightning()
    from topoprof.integrations.lightning import TopoprofCallback

    cb = TopoprofCallback(tmp_path / "lit", steps=10, skip_first=1, tensorboard=False)
    model = _lit_module(pl, fail_at=4)
    with pytest.raises(RuntimeError, match="boom in training_step"):
        _fit(pl, tmp_path, cb, model, max_steps=20)
    run = topoprof.load(tmp_path / "lit")
    assert run.manifest.status == "failed: RuntimeError after 3 profiled steps"
    assert [s.index for s in run.rank().steps] == [1, 2, 3]
    assert _hooks_on(model) == 0


def test_lightning_callback_rejects_bad_options_at_once(tmp_path):
    _lightning()
    from topoprof.errors import ProfilerUsageError
    from topoprof.integrations.lightning import TopoprofCallback

    with pytest.raises(ProfilerUsageError, match="steps must be a positive integer"):
        TopoprofCallback(tmp_path / "x", steps=0)


# --------------------------------------------------------------------------- Hugging Face
def _transformers():
    tf = pytest.importorskip("transformers", reason="transformers is not installed (pip install topoprof[huggingface])")
    pytest.importorskip("accelerate", reason="accelerate (needed by transformers.Trainer) is not installed")
    return tf


class _TokenData(torch.utils.data.Dataset):
    """Random token ids (32 per sample) and labels."""

    def __init__(self, n: int = 64) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 1000, (32,), generator=g), "labels": torch.tensor(i % 3)}


def _trainer(tf, tmp_path, model, callback, max_steps: int, data, accumulate: int = 1):
    args = tf.TrainingArguments(
        output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, max_steps=max_steps,
        gradient_accumulation_steps=accumulate, report_to=[], use_cpu=True, logging_strategy="no",
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    return tf.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])


def _tiny_bert(tf):
    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=128, num_labels=3)
    return tf.BertForSequenceClassification(config)


def test_huggingface_callback_profiles_trainer_steps(tmp_path):
    tf = _transformers()
    from topoprof.integrations.huggingface import TopoprofCallback

    cb = TopoprofCallback(tmp_path / "bert", steps=3, skip_first=1, tensorboard=False)
    model = _tiny_bert(tf)
    _trainer(tf, tmp_path, model, cb, max_steps=6, data=_TokenData(), accumulate=2).train()
    run = topoprof.load(tmp_path / "bert")
    assert run.manifest.status == "complete"
    rank = run.rank()
    assert [s.index for s in rank.steps] == [1, 2, 3]
    assert all((s.forward_passes, s.backward_passes, s.optimizer_steps) == (2, 2, 1) for s in rank.steps)
    assert rank.module("").kind == "BertForSequenceClassification"
    assert rank.module("bert.encoder.layer.0.attention.self.query").flops_fwd == 2 * 4 * 32 * 64 * 64
    assert _hooks_on(model) == 0


def test_huggingface_failed_training_saves_finished_steps_via_the_context(tmp_path):
    tf = _transformers()
    from topoprof.integrations.huggingface import TopoprofCallback

    cb = TopoprofCallback(tmp_path / "bert", steps=10, skip_first=1, tensorboard=False)
    model = _tiny_bert(tf)
    trainer = _trainer(tf, tmp_path, model, cb, max_steps=10, data=_TokenData())
    calls = {"n": 0}  # the 5th forward raises: in step 4, after steps 1-3 were profiled
    original = model.forward

    @functools.wraps(original)  # the Trainer reads the signature to pick the input columns
    def forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom in forward")
        return original(*args, **kwargs)

    model.forward = forward
    try:
        with pytest.raises(RuntimeError, match="boom in forward"), cb:
            trainer.train()
    finally:
        del model.forward
    run = topoprof.load(tmp_path / "bert")
    assert run.manifest.status == "failed: RuntimeError after 3 profiled steps"
    assert [s.index for s in run.rank().steps] == [1, 2, 3]
    assert _hooks_on(model) == 0
