"""revgen: reverse-instruction synthesis (instruction backtranslation) toolkit."""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" on every import on
# a CPU machine (it then uses its own kernels): noise on every command, so only errors from it.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
