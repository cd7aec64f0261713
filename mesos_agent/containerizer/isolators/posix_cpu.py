"""posix/cpu: the cpu time (and resident memory, processes, threads) of the task's process tree, read from
/proc through psutil.  It limits nothing: it stands in where no cpu cgroup accounts for the task."""

from __future__ import annotations

import psutil

from .._names import POSIX_CPU
from ._interface import ContainerView, Isolator


def process_tree_usage(pid: int) -> dict[str, float]:
    """cpu times, resident memory, processes and threads of pid and its descendants; {} when pid is gone."""
    try:
        main = psutil.Process(pid)
        processes = [main, *main.children(recursive=True)]
    except psutil.Error:
        return {}
    user = system = rss = 0.0
    threads = 0
    counted = 0
    for process in processes:
        try:
            with process.oneshot():
                times = process.cpu_times()
                memory = process.memory_info()
                thread_count = process.num_threads()
        except psutil.Error:
            continue
        user += times.user
        system += times.system
        rss += memory.rss
        threads += thread_count
        counted += 1
    return {
        "cpus_user_time_secs": user,
        "cpus_system_time_secs": system,
        "mem_rss_bytes": rss,
        "processes": float(counted),
        "threads": float(threads),
    }


class PosixCpu(Isolator):
    name = POSIX_CPU

    def usage(self, container: ContainerView) -> dict[str, float]:
        return process_tree_usage(container.pid)
