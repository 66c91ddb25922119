"""Heap evidence from inside the operator, for `scale_bench.py --profile` (a development aid).

The benchmark puts this folder on the operator's PYTHONPATH, so Python imports it at startup. It
starts tracemalloc when QZ_PROFILE_TRACEMALLOC is set (frames to keep), and on SIGUSR2 writes to
QZ_PROFILE_HEAP_OUT: RSS, thread and asyncio task counts, the most numerous object types (gc), and
tracemalloc's top allocation sites (live memory by traceback); then it trims the C allocator
(malloc_trim) and writes the RSS before and after: memory Python freed but the allocator kept.
"""

from __future__ import annotations

import os
import signal

_OUT = os.environ.get("QZ_PROFILE_HEAP_OUT")


def _dump(_signum: int, _frame: object) -> None:
    import asyncio
    import collections
    import gc
    import threading
    import tracemalloc

    assert _OUT is not None
    lines = []
    with open(f"/proc/{os.getpid()}/status") as f:
        lines += [ln.strip() for ln in f if ln.startswith(("VmRSS", "VmHWM", "Threads"))]
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
        names = collections.Counter(
            getattr(t.get_coro(), "__qualname__", type(t.get_coro()).__name__) for t in tasks
        )
        lines.append(f"asyncio tasks: {len(tasks)}")
        lines += [f"  {n:6d} {name}" for name, n in names.most_common(25)]
    except RuntimeError:
        lines.append("asyncio tasks: no running loop in the signalled thread")
    lines.append(f"threads: {threading.active_count()}")
    lines += [f"  {t.name}" for t in threading.enumerate()][:60]
    objs = gc.get_objects()
    counts = collections.Counter(type(o).__name__ for o in objs)
    lines.append(f"gc-tracked objects: {len(objs)}")
    lines += [f"  {n:8d} {name}" for name, n in counts.most_common(30)]
    del objs
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen*")]
        )
        current, peak = tracemalloc.get_traced_memory()
        lines.append(f"tracemalloc: current {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
        for kind in ("filename", "lineno", "traceback"):
            stats = snap.statistics(kind)
            lines.append(f"-- top by {kind}")
            for stat in stats[: 12 if kind == "traceback" else 30]:
                lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d} blocks")
                frames = stat.traceback.format(limit=8 if kind == "traceback" else 1)
                lines += [f"      {fr}" for fr in frames]
    # How much of the RSS is memory the allocator holds but Python freed: glibc gives it back on a trim.
    import ctypes

    before = _rss_kib()
    trimmed = ctypes.CDLL("libc.so.6").malloc_trim(0)
    lines.append(f"malloc_trim(0) -> {trimmed}: RSS {before} kB -> {_rss_kib()} kB")
    with open(_OUT, "a") as f:
        f.write("\n".join(lines) + "\n\n")


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS"))


if _OUT:
    frames = int(os.environ.get("QZ_PROFILE_TRACEMALLOC") or 0)
    if frames:
        import tracemalloc

        tracemalloc.start(frames)
    signal.signal(signal.SIGUSR2, _dump)
