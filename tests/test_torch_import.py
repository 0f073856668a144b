"""Tests for lrbench.torch_import, and that a CPU sweep's parent never imports torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, require_mnist, run_python


@pytest.mark.slow
def test_a_ctrl_c_during_the_import_is_raised_once_torch_is_in() -> None:
    """Not inside torch's start-up (an abort there), not lost: after the import. (Python's
    own handler is set first: a process started from a test may inherit SIGINT ignored.)"""
    done = run_python(
        "import os, signal, sys, threading\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from lrbench.torch_import import import_torch\n"
        "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    import_torch()\n"
        "    print('not interrupted')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted, torch in:', 'torch' in sys.modules)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "interrupted, torch in: True"


@pytest.mark.slow
def test_the_stored_torch_version_is_torchs_own_without_importing_it() -> None:
    done = run_python(
        "import sys\n"
        "from lrbench.sweep.study import torch_version\n"
        "read = torch_version()\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "print(read == torch.__version__, read)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "True"


@pytest.mark.slow
def test_a_cpu_sweep_and_its_confirm_train_without_torch_in_the_parent(tmp_path: Path) -> None:
    """Only the slots' processes import torch (~1.4 s of CPU each process): the parent
    reads the data into numpy, and counts no GPU with --device cpu."""
    require_mnist()
    script = (
        "import sys\n"
        "from lrbench import entry\n"
        "sys.argv = ['lrbench', *sys.argv[1:]]\n"
        "try:\n"
        "    entry.main()\n"
        "finally:\n"
        "    print('torch in the parent:', 'torch' in sys.modules)\n")
    common = ("--device", "cpu", "--workers", "2", "--data-dir", str(DATA),
              "--results", str(tmp_path))
    for command in (("sweep", "smoke"), ("confirm", "smoke", "--seeds", "2")):
        done = run_python(script, *command, *common)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("torch in the parent: False"), done.stdout
