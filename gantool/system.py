"""What the machine offers this process (standard library only; safe to import anywhere)."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def die_with_parent(sig: int) -> None:
    """Linux: this process gets ``sig`` when the process that started it dies (even by
    SIGKILL), so a helper process is never left behind. A no-op elsewhere."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
