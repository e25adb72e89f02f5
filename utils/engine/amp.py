"""Mixed precision: which autocast dtype a run uses, the autocast context, the loss scaler, and moving a
batch to the device."""
import contextlib

import torch


def amp_dtype(amp, device):
    """'auto' means bf16 on GPUs with native bf16 (compute capability 8.0+: A100, H100, RTX 30xx...), fp32
    elsewhere: pre-Ampere GPUs only emulate bf16 (slowly) and CPU autocast is slow."""
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8 else None
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device, dtype):
    """Loss scaling is needed for fp16 only; disabled scalers are no-ops."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def prepare_batch(images, device, channels_last):
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last_3d)
    return images
