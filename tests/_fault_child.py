"""The child side of tests/test_fault_injection.py: examples/cifar10.py with a fault hook.

The forkserver of that test imports :data:`PRELOAD` (torch, dynamicblocks,
examples/cifar10.py, ...) once, before any tensor op; every child forks from
it and calls :func:`run`, which optionally installs a hook on the ``os`` and
``tempfile`` that ``dynamicblocks.train._atomic`` sees. The hook
counts the files written through ``atomic_open`` and SIGKILLs the child at a
chosen write: at its ``fsync`` after truncating the temporary file to half
(``"during"``), just before its ``os.replace`` (``"before"``) or just after it
(``"after"``). Every event is appended to a JSON-lines trace that the parent
reads back.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from dynamicblocks.train import _atomic

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cifar10_example", ROOT / "examples" / "cifar10.py")
cifar10 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar10)

#: What the forkserver imports before it forks children: what every run needs (SGD
#: imports torch._dynamo on first use, plot_curves matplotlib.pyplot), then this module.
PRELOAD = ("torch", "torch._dynamo", "matplotlib.pyplot", "dynamicblocks", __name__)
#: Where in write number k the hook kills the child.
POINTS = ("during", "before", "after")


def _append(trace: Path, event: dict[str, Any]) -> None:
    """Add one event to the trace, on disk before the next statement runs."""
    with open(trace, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")


def read_trace(trace: Path) -> list[dict[str, Any]]:
    """The events a child appended to ``trace`` (none if it wrote none)."""
    if not trace.is_file():
        return []
    return [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()]


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Delegate:
    """A stand-in for a module: ``overrides`` first, then the module's attributes."""

    def __init__(self, module: Any, **overrides: Any) -> None:
        self._module, self._overrides = module, overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._module, name)


class FaultHook:
    """Counts the writes of ``atomic_open`` and kills the process at write ``k``, ``point``."""

    def __init__(self, trace: Path, kill: tuple[int, str] | None) -> None:
        if kill is not None and kill[1] not in POINTS:
            raise ValueError(f"point must be one of {POINTS}, got {kill[1]!r}")
        self.trace, self.kill = trace, kill
        self.count = 0
        self.tmp = ""

    def install(self) -> None:
        _atomic.os = _Delegate(os, fsync=self.fsync, replace=self.replace)
        _atomic.tempfile = _Delegate(tempfile, mkstemp=self.mkstemp)

    def _due(self, point: str) -> bool:
        return self.kill == (self.count, point)

    def _die(self, point: str, name: str) -> None:
        _append(self.trace, {"killed": self.count, "point": point, "name": name})
        _die()

    def mkstemp(self, *args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, tmp = tempfile.mkstemp(*args, **kwargs)
        self.count += 1
        self.tmp = tmp
        return fd, tmp

    def fsync(self, fd: int) -> None:
        if self._due("during"):
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            # the temporary file's name is .NAME.XXXX.tmp
            self._die("during", Path(self.tmp).name[1:].rsplit(".", 2)[0])
        os.fsync(fd)

    def replace(self, src: str | os.PathLike, dst: str | os.PathLike) -> None:
        name = Path(dst).name
        if self._due("before"):
            self._die("before", name)
        os.replace(src, dst)
        _append(self.trace, {"write": self.count, "name": name})
        if self._due("after"):
            self._die("after", name)


def run(
    argv: list[str],
    log: str,
    trace: str,
    hook: bool = False,
    kill: tuple[int, str] | None = None,
    delay: float | None = None,
) -> None:
    """Run ``cifar10.main(argv)`` and exit with its status (the body of a child process).

    Args:
        argv: the script's flags.
        log: the file that takes the child's stdout and stderr.
        trace: the JSON-lines file of events: ``{"write": k, "name": ...}``
            per completed write (with ``hook``), ``{"killed": k, "point":
            ..., "name": ...}`` just before a hooked kill, and ``{"status":
            ..., "seconds": ...}`` at the end of a run that was not killed.
        hook: install the :class:`FaultHook` (to count and record writes).
        kill: ``(k, point)``: SIGKILL at write ``k`` (1-based) at ``point``.
        delay: SIGKILL from a timer thread after this many seconds.
    """
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    torch.set_num_threads(1)
    if hook or kill is not None:
        FaultHook(Path(trace), kill).install()
    if delay is not None:
        timer = threading.Timer(delay, _die)
        timer.daemon = True
        timer.start()
    start = time.perf_counter()
    status = cifar10.main(argv)
    _append(Path(trace), {"status": status, "seconds": time.perf_counter() - start})
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(status)
