"""On a CUDA device: training learns in every precision and mode, and inference matches the CPU.

Skipped where torch sees no GPU; ``bench/gpu_check.sh`` runs them (``pytest -m gpu``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from _runs import TINY_STREAM, stream_ids, tiny_model, train_stream_run, window_ids, write_text
from charlstm.config.model import ModelConfig
from charlstm.config.sample import SampleConfig
from charlstm.generation.generators import generate_text
from charlstm.generation.prompts import prompt_ids
from charlstm.generation.sampling import make_generator
from charlstm.model.network import CharLSTM, prime, prime_many
from charlstm.model.stepper import LSTMStepper
from charlstm.runs.loading import load_model
from charlstm.serve.jobs import Job, Slots
from charlstm.serve.scheduler import Scheduler
from charlstm.training import session as api
from charlstm.training.events import StepEnd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device and a CUDA build of torch"),
]

V = 11


@pytest.fixture(autouse=True)
def _full_fp32():
    """cuDNN may run fp32 RNNs in TF32 (10-bit mantissa); comparisons with the CPU want full fp32.

    Set and restored by hand: torch.backends.cuda.matmul answers attributes through
    ``__getattr__``, which monkeypatch's undo cannot restore.
    """
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("settings", [{"precision": "fp32"}, {"precision": "bf16"}, {"compile": True}],
                         ids=["fp32", "bf16", "compile"])
def test_training_on_cuda_gives_finite_falling_loss(tmp_path: Path, settings):
    if settings.get("precision") == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    text = write_text(tmp_path / "text.txt", words=2000)
    overrides = {**TINY_STREAM, "hidden_size": 32, "device": "cuda", "max_steps": 80, "warmup_steps": 5,
                 "eval_every": 40, **settings}
    trainer = api.start_run([text], tmp_path / "run", preset="default", overrides=overrides,
                            progress_bar=False)
    losses: list[torch.Tensor] = []  # kept on the device: reading each one would sync every step
    trainer.callbacks.on(StepEnd, lambda event: losses.append(event.loss))
    result = trainer.fit()
    assert result.stop_reason == "max_steps"
    assert trainer.model.head.weight.is_cuda
    values = [float(loss) for loss in losses]
    assert len(values) == 80 and all(math.isfinite(v) for v in values)
    first, last = sum(values[:10]) / 10, sum(values[-10:]) / 10
    assert last < first - 0.3, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert math.isfinite(result.last_eval["val_loss"])


@pytest.mark.parametrize("framing", ["stream", "window"])
def test_greedy_generation_on_cuda_equals_the_cpu(framing):
    cpu_model = tiny_model(V, scale=4.0)  # large weights: greedy does not settle on one character
    gpu_model = copy.deepcopy(cpu_model).to("cuda")
    prompt = torch.randint(0, V, (9,), generator=torch.Generator().manual_seed(3))
    config = SampleConfig(greedy=True, length=50, num_samples=2)

    def ids(model: CharLSTM, device: str) -> list[list[int]]:
        generator, _ = make_generator(0, torch.device(device))
        steps = (stream_ids(model, prompt, config, generator) if framing == "stream"
                 else window_ids(model, prompt, 6, config, generator))
        return torch.stack([s.cpu() for s in steps], dim=1).tolist()

    on_cpu, on_gpu = ids(cpu_model, "cpu"), ids(gpu_model, "cuda")
    assert on_gpu == on_cpu
    assert len(set(on_cpu[0])) > 1  # a model stuck on one character would prove little


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("encoding", ["embedding", "one-hot"])
def test_stepper_on_cuda_equals_the_forward_on_cuda(layers, encoding):
    torch.manual_seed(layers)
    config = ModelConfig(vocab_size=V, hidden_size=32, num_layers=layers, input_encoding=encoding,
                         embedding_size=8, dropout=0.3)
    model = CharLSTM(config).to("cuda").eval()
    ids = torch.randint(0, V, (4, 12), device="cuda")
    with torch.no_grad():
        expected, (h_ref, c_ref) = model(ids)
    state = tuple(s.clone() for s in model.init_state(4, "cuda"))
    stepper = LSTMStepper(model, state)
    for t in range(ids.shape[1]):
        logits = stepper.step(ids[:, t])
        assert logits.is_cuda
        torch.testing.assert_close(logits, expected[:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[0], h_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[1], c_ref, atol=1e-5, rtol=1e-5)


def test_prompts_read_together_on_cuda_end_where_read_alone():
    model = tiny_model(V, scale=4.0).to("cuda")
    prompts = [torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(n)) for n in (3, 17, 9)]
    logits, state = prime_many(model, prompts)
    assert logits.is_cuda
    for k, prompt in enumerate(prompts):
        alone_logits, alone_state = prime(model, prompt[None, :])
        torch.testing.assert_close(logits[k], alone_logits[0], atol=1e-5, rtol=1e-5)
        for together, alone in zip(state, alone_state, strict=True):
            torch.testing.assert_close(together[:, k], alone[:, 0], atol=1e-5, rtol=1e-5)


def test_the_scheduler_on_cuda_gives_each_stream_the_library_s_text(tmp_path: Path):
    import asyncio

    loaded = load_model(train_stream_run(tmp_path / "run", write_text(tmp_path / "t.txt")), "cuda")
    slots = Slots(4)
    scheduler = Scheduler(loaded, 4, slots.give)
    requests = [("the ", {"greedy": True}), ("and ", {"seed": 3, "num_samples": 2}), ("a", {"seed": 4})]

    async def run(prompt: str, settings: dict) -> list[str]:
        config = SampleConfig(**{"seed": 1, "length": 40, **settings})
        text, ids = prompt_ids(loaded, prompt, config, config.seed)
        job = Job(asyncio.get_running_loop(), "m", text, ids, config)
        assert slots.take(config.num_samples)
        scheduler.submit(job)
        texts = [""] * config.num_samples
        while (event := await job.queue.get())[0] != "end":
            assert event[0] != "error", event
            if event[0] == "text":
                texts = [t + d for t, d in zip(texts, event[1]["delta"], strict=True)]
        return texts

    async def main():
        return await asyncio.gather(*[run(prompt, settings) for prompt, settings in requests])

    try:
        for (prompt, settings), texts in zip(requests, asyncio.run(main()), strict=True):
            assert texts == generate_text(loaded, prompt, **{"seed": 1, "length": 40, **settings})
    finally:
        scheduler.close()
    assert slots.used == 0
