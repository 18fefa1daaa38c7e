"""Speed options: what depends on the machine, and the options of a training run."""

from types import SimpleNamespace

import torch

from significance import hardware
from significance.models.module import load_classifier
from significance.training.train import compile_network, train


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))
    assert hardware.warn_if_bf16_emulated("bf16-mixed", "cpu")
    assert "emulated" in caplog.text
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert not hardware.warn_if_bf16_emulated("bf16-mixed", "cpu")
    assert not hardware.warn_if_bf16_emulated("32-true", "cpu")


def test_channels_last_and_compile_train_and_their_checkpoint_loads(compose_train, monkeypatch):
    calls = []
    real_compile = torch.compile

    def spy(model, **arguments):
        calls.append(arguments)
        return real_compile(model, backend="eager")  # inductor would compile C++ for minutes

    monkeypatch.setattr(torch, "compile", spy)
    cfg = compose_train("task=coins/period", "channels_last=true", "compile={mode: default}")
    result = train(cfg)
    assert result["status"] == "ok" and calls == [{"mode": "default"}]
    model = load_classifier(result["checkpoint"])
    assert model.hparams.channels_last
    convolution = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    assert not convolution.weight.is_contiguous()


def test_compile_takes_true_a_mode_or_torch_compile_arguments():
    calls = []
    model = SimpleNamespace(
        net=SimpleNamespace(compile=lambda **arguments: calls.append(arguments))
    )
    for options in (False, None, True, "max-autotune", {"mode": "reduce-overhead"}):
        compile_network(model, options)
    assert calls == [{}, {"mode": "max-autotune"}, {"mode": "reduce-overhead"}]


def test_bf16_true_trains_on_batches_cast_to_bf16(compose_train):
    # Lightning casts a batch while it is still bytes: the datamodule casts what it normalised.
    result = train(compose_train("task=coins/period", "trainer.precision=bf16-true"))
    assert result["status"] == "ok"
    weights = torch.load(result["checkpoint"], weights_only=True, mmap=True)["state_dict"]
    assert {tensor.dtype for tensor in weights.values() if tensor.is_floating_point()} == {
        torch.bfloat16
    }
