"""What this machine's CPU offers: its model name and flags, and whether it computes bfloat16
natively. One rule for training (`train.precision: auto`) and prediction (the runtime's `auto`)."""

from pathlib import Path

NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu() -> dict:
    """This CPU's model name and flags (Linux's /proc/cpuinfo; empty elsewhere)."""
    name, flags = "unknown", []
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = sorted(value.split())
    return {"model": name, "flags": flags}


def native_bfloat16(flags: list[str]) -> bool:
    return any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS)
