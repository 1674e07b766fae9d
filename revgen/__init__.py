"""revgen: reverse-instruction synthesis (instruction backtranslation) toolkit."""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" on every import on
# a CPU machine (it then uses its own kernels): noise on every command, so only errors from it.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

# The Python API (revgen/api.py). Its names are the stage packages' names too: the packages are
# imported first, so ``from revgen.synthesize import SynthConfig`` still finds the package, and the
# functions then take the names on ``revgen`` itself.
import revgen.curate  # noqa: E402, F401
import revgen.synthesize  # noqa: E402, F401
import revgen.train  # noqa: E402, F401
from revgen.api import curate, push, run, synthesize, train  # noqa: E402
from revgen.errors import UserError  # noqa: E402

__all__ = ["train", "synthesize", "curate", "run", "push", "UserError", "__version__"]
