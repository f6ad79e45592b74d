"""Peak FLOP/s of accelerators, for model FLOPs utilisation (MFU)."""

from __future__ import annotations

import torch

# Dense bf16 peak FLOP/s of one accelerator, by a substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device, dtype: torch.dtype, configured: float | None = None) -> float | None:
    """Peak FLOP/s of one device when known: the configured value, else bf16 on a listed GPU."""
    if configured is not None:
        return configured
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def model_flops_utilisation(
    flops_per_token: int, tokens_per_s: float, peak: float | None, devices: int
) -> float | None:
    """Achieved training FLOP/s over the peak of all devices; None when the peak is unknown."""
    return flops_per_token * tokens_per_s / (peak * devices) if peak else None
