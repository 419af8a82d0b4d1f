"""QLoRA: the base model loaded in 4-bit NF4 and prepared for k-bit training.

``peft.method: qlora`` in a recipe means what the QLoRA paper (Dettmers et al. 2023, sections
2 and 3) means: the frozen base weights stored as 4-bit NormalFloat with double quantization
(the quantization constants quantized again), computation in bfloat16, and LoRA adapters
trained on top in higher precision. ``prepare_model_for_kbit_training`` (PEFT) then casts the
remaining non-quantized parameters (norms, embeddings' outputs) to float32 and makes the
inputs require gradients, so the adapters receive gradients through the frozen 4-bit layers.

The quantization is done by bitsandbytes, which has a CUDA path and, since 0.46, a CPU path.
Before loading, :func:`check_4bit_support` quantizes and multiplies one small matrix on the
device the model will use; if bitsandbytes is missing or cannot quantize there, the run stops
at start with the reason. It never falls back to training the unquantized model: a recipe
that says QLoRA either trains QLoRA or does not train.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from iad_pipeline.errors import IadError

INSTALL_HINT = "install it with `pip install bitsandbytes` (it is in the `gpu` and `dev` extras)"


class QuantizationUnavailableError(IadError):
    """4-bit loading was asked for and cannot be done on this machine."""


def qlora_config() -> Any:
    """The QLoRA paper's quantization: NF4, double quantization, bfloat16 compute.

    >>> config = qlora_config()
    >>> config.load_in_4bit, config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant
    (True, 'nf4', True)
    >>> str(config.bnb_4bit_compute_dtype)
    'torch.bfloat16'
    """
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def training_device() -> str:
    """The device this process trains on: its local CUDA device, else the CPU."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def check_4bit_support(device: str) -> None:
    """Raise :class:`QuantizationUnavailableError` unless bitsandbytes quantizes on ``device``.

    The probe is the real operation on a 64x64 matrix: NF4 quantization with double
    quantization, then a 4-bit matrix product in bfloat16.
    """
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        msg = f"qlora: bitsandbytes is not installed ({exc}); {INSTALL_HINT}, or use peft: lora"
        raise QuantizationUnavailableError(msg) from exc
    import torch

    try:
        weight = torch.randn(64, 64, dtype=torch.bfloat16, device=device)
        packed, state = bnb.functional.quantize_4bit(
            weight, quant_type="nf4", compress_statistics=True
        )
        inputs = torch.randn(2, 64, dtype=torch.bfloat16, device=device)
        bnb.matmul_4bit(inputs, packed.t(), quant_state=state)
    except Exception as exc:  # any failure of the backend means: no 4-bit on this device
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        msg = (
            f"qlora: bitsandbytes {bnb.__version__} cannot quantize to 4 bits on {device} "
            f"({reason}); run on a machine it supports, or use peft: lora"
        )
        raise QuantizationUnavailableError(msg) from exc


def load_qlora_model(path: str | Path, *, gradient_checkpointing: bool = False) -> Any:
    """The model at ``path`` in 4-bit NF4, prepared for k-bit training (adapters go on top).

    Raises :class:`QuantizationUnavailableError` before loading anything when 4-bit is not
    available on this machine.
    """
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForImageTextToText

    device = training_device()
    check_4bit_support(device)
    model = AutoModelForImageTextToText.from_pretrained(
        path,
        quantization_config=qlora_config(),
        dtype=torch.bfloat16,
        device_map={"": device},
    )
    if not getattr(model, "is_loaded_in_4bit", False):
        msg = f"qlora: {path} did not load in 4 bits; refusing to train it unquantized"
        raise QuantizationUnavailableError(msg)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


def count_4bit_layers(model: Any) -> int:
    """How many of the model's linear layers hold 4-bit weights."""
    import bitsandbytes as bnb

    return sum(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())
