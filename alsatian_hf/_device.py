"""The device as far as speed goes, for measurements kept in a store that several kinds of node may share."""

from __future__ import annotations

import functools
import platform

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, vector ISA and intra-op threads."""
    if device.type == "cuda":
        return f"cuda/{torch.cuda.get_device_name(device)}"
    return f"{device.type}/{cpu_model()}/{torch.backends.cpu.get_cpu_capability()}/{torch.get_num_threads()} threads"


@functools.cache
def cpu_model() -> str:
    """The CPU's model name, read once per process (every candidate's layout key asks for it)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return model
