"""Importing torch in a command that may be interrupted meanwhile.

An interrupt raised while torch's C++ start-up code calls back into Python cannot pass
through it: the process aborts ("terminate called after throwing an instance of
'pybind11::error_already_set'", SIGABRT) instead of ending with 130 or 143. The console
script holds SIGINT and SIGTERM over its own imports (``lrbench.entry``). A sweep's parent
imports torch later, and only where it needs it (GPUs to count, a user's model or data
to check), through ``import_torch``.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from types import ModuleType

HELD = (signal.SIGINT, signal.SIGTERM)


def import_torch() -> ModuleType:
    """torch, imported with SIGINT and SIGTERM held; one that came meanwhile is sent again
    once the import is done, to the handler that was in place. (Signals can be held only
    in the main thread, and only the main thread receives them.)"""
    if "torch" in sys.modules or threading.current_thread() is not threading.main_thread():
        return importlib.import_module("torch")
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum))
                for s in HELD}
    try:
        return importlib.import_module("torch")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            os.kill(os.getpid(), received[0])
