"""Speed options that depend on the machine."""

from significance import speed


def test_bf16_on_a_cpu_without_bf16_instructions_is_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2"}))
    assert speed.warn_if_bf16_emulated("bf16-mixed", "cpu")
    assert "emulated" in caplog.text
    monkeypatch.setattr(speed, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert not speed.warn_if_bf16_emulated("bf16-mixed", "cpu")
    assert not speed.warn_if_bf16_emulated("32-true", "cpu")
