"""The ``/bin/sh`` launch wrapper: change to the sandbox, enter the cgroups, run the task.

Plain launches ``exec`` the task (the container's main process is the task
itself, its exit status the task's own).  Checkpointed launches keep the
wrapper as the task's parent so that the exit status outlives the agent:

* the task runs as the wrapper's child (through ``env --default-signal``
  where available: an asynchronous command of a non-interactive shell would
  otherwise start with SIGINT and SIGQUIT ignored);
* SIGTERM or SIGINT sent to the wrapper are forwarded to the task's process
  group (the containerizer itself signals the task's processes directly and
  leaves the wrapper out, so that each process gets a signal once);
* when the task ends, the wrapper writes its wait status atomically to the
  status file, then ends the same way (the same exit code, or the same
  signal raised on itself, core dumps off);
* the wrapper protects itself from the OOM killer (best effort) after the
  task has been forked, so that an OOM kill of the task is still recorded;
* the task starts only once the agent has written the launch record (as
  Mesos' launcher waits on a pipe until the agent has checkpointed the forked
  pid): the wrapper's stdin is a pipe from the agent, which writes ``go``
  (``LAUNCH_GO``) to it once the record is on disk.  Should the agent die
  before (a ``kill -9`` between spawn and record: the next agent finds no
  record of the container and reports the task lost), the pipe ends without
  it and the wrapper exits with ``LAUNCH_FAILED_STATUS``, recorded, before
  the task's command ever ran: a task reported lost never runs on unseen.
  The task's own stdin is ``/dev/null``.

Without cgroups (posix isolation), and for RLIMIT_FSIZE with cgroups too,
the wrapper also sets the task's rlimits with the shell's own ``ulimit``
(no extra program, no ``preexec_fn``), soft and hard alike so that the task
cannot raise them; see ``rlimit_steps``.

``exec_argv`` is the same wrapper for a command run inside an existing
container (a COMMAND health check): it joins the container's cgroups, takes
the task's rlimits and user, and with ``namespaces/pid`` enters the task's
pid and mount namespaces through ``nsenter``.

With ``namespaces/pid`` the task runs under ``unshare --pid --fork
--mount-proc --kill-child`` with a minimal ``/bin/sh`` init as pid 1 of the
new namespace (a task running as pid 1 would ignore SIGTERM); the init
waits for the task and exits with its status, and when it ends the kernel
kills whatever is left in the namespace.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from pathlib import Path
from shlex import quote

from ._types import LaunchSpec

#: Exit status of the launch wrapper when it cannot set the task up (enter
#: its cgroups, change to its sandbox); the task's command never ran then.
LAUNCH_FAILED_STATUS = 125
#: Prefix of the line the wrapper writes to the task's stderr in that case.
WRAPPER_MARK = "aiomesos-containerizer:"
#: What the agent writes to a checkpointed launch's wrapper (on its stdin) once the launch record is written.
LAUNCH_GO = b"go\n"

# The init of a pid namespace: run the task, wait for it, exit with its status.
_NS_INIT = '"$@" & wait $! 2>/dev/null'
_UNSHARE_ARGS = ("--pid", "--fork", "--mount-proc", "--kill-child")


@functools.cache
def env_reset_argv() -> tuple[str, ...]:
    """``env --default-signal=INT,QUIT --`` where env supports it (coreutils >= 8.31), else ()."""
    env = shutil.which("env") or next((p for p in ("/usr/bin/env", "/bin/env") if os.path.exists(p)), None)
    if env is None:
        return ()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = subprocess.run(
            [env, "--default-signal=INT,QUIT", "--", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
        if probe.returncode == 0:
            return (env, "--default-signal=INT,QUIT", "--")
    return ()


@functools.cache
def tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin") if os.path.exists(p := f"{d}/{name}")), None
    )


def unshare_argv(unshare: str) -> list[str]:
    return [unshare, *_UNSHARE_ARGS, "--", "/bin/sh", "-c", _NS_INIT, "aiomesos-init"]


def rlimit_steps(data_bytes: int | None, fsize_bytes: int | None, no_core: bool) -> list[str]:
    """``ulimit`` commands for /bin/sh: RLIMIT_DATA (``-d``, KiB), RLIMIT_FSIZE (``-f``, 512-byte blocks as
    dash, bash-as-sh and busybox count them), RLIMIT_CORE 0.  Rounded down, at least one unit."""
    steps = []
    if no_core:
        steps.append("ulimit -c 0")
    if data_bytes is not None:
        steps.append(f"ulimit -d {max(1, data_bytes // 1024)}")
    if fsize_bytes is not None:
        steps.append(f"ulimit -f {max(1, fsize_bytes // 512)}")
    return steps


def _setup_steps(cwd: str | None, paths: list[Path], rlimits: list[str]) -> list[str]:
    steps = []
    if cwd is not None:
        complaint = quote(f"{WRAPPER_MARK} cannot change to {cwd}")
        steps.append(f"cd -- {quote(cwd)} || {{ echo {complaint} >&2; exit {LAUNCH_FAILED_STATUS}; }}")
    if rlimits:
        complaint = quote(f"{WRAPPER_MARK} cannot set the task's rlimits ({'; '.join(rlimits)})")
        steps.append(f"{' && '.join(rlimits)} || {{ echo {complaint} >&2; exit {LAUNCH_FAILED_STATUS}; }}")
    if paths:
        joins = " && ".join(f"echo 0 >{quote(f'{path}/cgroup.procs')}" for path in paths)
        complaint = quote(f"{WRAPPER_MARK} cannot enter the container's cgroups")
        steps.append(f"{joins} || {{ echo {complaint} >&2; exit {LAUNCH_FAILED_STATUS}; }}")
    return steps


def wrapper_argv(
    spec: LaunchSpec,
    paths: list[Path],
    prefix: list[str],
    *,
    cd: bool,
    status_file: str | None = None,
    unshare: str | None = None,
    rlimits: list[str] | None = None,
) -> list[str]:
    """argv of the launch wrapper for spec (or spec.argv itself when no wrapper is needed)."""
    steps = _setup_steps(os.path.abspath(spec.cwd) if cd else None, paths, rlimits or [])
    if not steps and not prefix and status_file is None and unshare is None:
        return list(spec.argv)

    first = prefix[0] if prefix else spec.argv[0]
    # env would take a command named like NAME=VALUE for an assignment.
    reset = list(env_reset_argv()) if "=" not in first else []
    runner = list(prefix)
    if unshare is not None:
        runner = [*unshare_argv(unshare), *reset, *runner]
    run = "".join(quote(word) + " " for word in runner)
    if status_file is None:
        steps.append(f'exec {run}"$@"')
        return ["/bin/sh", "-c", "; ".join(steps), "aiomesos-launch", *spec.argv]

    if unshare is None:
        run = "".join(quote(word) + " " for word in reset) + run
    mv = tool("mv") or "mv"
    status = quote(status_file)
    record = f"2>/dev/null >{status}.tmp && {quote(mv)} -f {status}.tmp {status} 2>/dev/null"
    unconfirmed = quote(
        f"{WRAPPER_MARK} the agent did not confirm the launch (it died or failed): the task never started"
    )
    steps.append(
        f'{{ read -r go && [ "$go" = {LAUNCH_GO.decode().strip()} ]; }} || '
        f"{{ echo {unconfirmed} >&2; echo {LAUNCH_FAILED_STATUS} {record}; exit {LAUNCH_FAILED_STATUS}; }}; "
        "exec </dev/null"
    )
    steps.append(
        f'{run}"$@" & c=$!\n'
        "echo -1000 2>/dev/null >/proc/$$/oom_score_adj\n"
        "fwd() { t=1; trap '' TERM INT; kill -s \"$1\" 0; trap 'fwd TERM' TERM; trap 'fwd INT' INT; }\n"
        "trap 'fwd TERM' TERM; trap 'fwd INT' INT\n"
        # A trap interrupts wait (status 128+N): wait again; once the task's status is collected, a
        # further wait answers 127 (no such job), which must not replace it.
        "s=; t=1\n"
        "while [ $t = 1 ]; do t=0; wait $c 2>/dev/null; r=$?\n"
        '  if [ $r != 127 ] || [ -z "$s" ]; then s=$r; fi\n'
        "done\n"
        f"echo $s {record}\n"
        "trap - TERM INT\n"
        "if [ $s -gt 128 ] && [ $s -lt 193 ]; then ulimit -c 0; kill -s $((s - 128)) $$; fi\n"
        "exit $s"
    )
    return ["/bin/sh", "-c", "".join(f"{step}; " for step in steps[:-1]) + steps[-1], "aiomesos-launch", *spec.argv]


def exec_argv(
    argv: list[str],
    cwd: str,
    paths: list[Path],
    prefix: list[str],
    *,
    rlimits: list[str] | None = None,
    nsenter: str | None = None,
    ns_target: int | None = None,
) -> list[str]:
    """argv of a wrapper running argv inside an existing container (see the module's docstring).

    With nsenter and ns_target (a process of the container's pid namespace, its init), the command runs in
    that process's pid and mount namespaces: nsenter forks it there and passes on its exit status (or its
    death by a signal), so killing the wrapper's process group kills the command.
    """
    steps = _setup_steps(cwd, paths, rlimits or [])
    runner: list[str] = []
    if nsenter is not None and ns_target is not None:
        # --wd without a path: the target's own cwd (the sandbox, as seen in its mount namespace).  A path
        # would be opened before entering the namespace: a cwd unreachable from there, getcwd() would fail.
        runner = [nsenter, f"--target={ns_target}", "--pid", "--mount", "--wd", "--"]
    run = "".join(quote(word) + " " for word in [*runner, *prefix])
    steps.append(f'exec {run}"$@"')
    return ["/bin/sh", "-c", "; ".join(steps), "aiomesos-exec", *argv]
