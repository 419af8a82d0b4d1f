"""GRPO and SFT training of the recipes (see training/grpo.py)."""

import logging

# bitsandbytes logs a WARNING on import when the optional `kernels` package (a faster CPU
# 4-bit kernel) is missing; its own fallback works, so the line only alarms users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
