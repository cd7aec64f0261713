"""Sandbox layout, as Mesos': WORK_DIR/agents/<agent>/frameworks/<fw>/executors/<executor>/runs/<container>,
with a `latest` link to the newest run.

Framework and task ids become directory names through `encode_id`, a reversible, injective escaping: two ids
never share a directory (`a/b` and `a_b` once did, and the files API served one task's stdout for the other).

Who may reach what: the directories the agent creates down to `runs/` are 0711 (traversable, not listable) and
the agent's; the run directory itself belongs to the task's user (0750), and so do its `stdout` and `stderr`. A
task running as `nobody` can then write its sandbox and reach it by its path, but not change the layout above
it (`runs/latest` included). The agent never follows `latest` when it serves files: `latest_runs` picks the
newest run directory itself; nor a link the task planted in its run directory when it writes a file there for a
framework message (`write_sandbox_file`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from scheduler_sdk.quoting import quoted
from scheduler_sdk.sandbox_files import file_name_problem

#: Mode of the directories the agent creates on the way to a run directory: traversable by the task users.
TRAVERSABLE = 0o711
#: Mode of a run directory (owned by the task's user).
RUN_DIR_MODE = 0o750
#: The characters an id keeps as they are in a directory name; every other byte of its UTF-8 is `%XX`.
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.@")
_NAME_MAX = 255


def sandbox_path(work_dir: Path, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> Path:
    """The run directory, from names already encoded (see `run_sandbox` for ids)."""
    return (
        work_dir / "agents" / agent_id / "frameworks" / framework_id / "executors" / executor_id / "runs" / container_id
    )


def run_sandbox(
    work_dir: Path, agent_id: str, framework_id: str, task_id: str, container_id: str, known: Path | None
) -> Path:
    """A run's sandbox: the one it was launched in (`known`), else (a task re-adopted after an agent restart)
    where the layout puts it."""
    if known is not None:
        return known
    return sandbox_path(work_dir, agent_id, encode_id(framework_id), encode_id(task_id), container_id)


def create_sandbox(work_dir: Path, agent_id: str, framework_id: str, executor_id: str, container_id: str) -> Path:
    path = sandbox_path(work_dir, agent_id, framework_id, executor_id, container_id)
    make_run_dir(str(path), container_id)
    return path


def make_run_dir(sandbox: str, container_id: str, owner: tuple[int, int] | None = None) -> None:
    """Create a run directory (owned by `owner`, (uid, gid), when given) and point the executor's `latest` link at
    it. System calls only (the agent calls this from a worker thread, once per launch): the common cases first,
    the fallbacks on their errors."""
    try:
        os.mkdir(sandbox, RUN_DIR_MODE)
    except FileNotFoundError:  # the executor's first run (the usual case)
        make_traversable_dirs(os.path.dirname(sandbox))
        os.mkdir(sandbox, RUN_DIR_MODE)
    except FileExistsError:
        pass
    if owner is not None:
        os.chown(sandbox, *owner, follow_symlinks=False)
    runs = os.path.dirname(sandbox)
    latest = f"{runs}/latest"
    try:
        os.symlink(container_id, latest)
    except FileExistsError:  # an earlier run of the executor: replace the link atomically
        tmp = f"{runs}/.latest.{container_id}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(container_id, tmp)
        os.replace(tmp, latest)


#: Mode of a file a framework message writes in a sandbox (owned by the task's user).
MESSAGE_FILE_MODE = 0o640
_TEMP_ATTEMPTS = 8
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _temp_token() -> str:
    return secrets.token_hex(8)


def write_sandbox_file(
    sandbox: Path, name: str, data: bytes, owner: tuple[int, int] | None, *, token: Callable[[], str] = _temp_token
) -> None:
    """Replace the file `name` of a run directory with one holding `data`, atomically: a reader sees the whole old
    file or the whole new one. The file belongs to `owner` (uid, gid; None: the run directory's owner, which is the
    task's user) when the agent runs as root, else it is the agent's own (and so its task's), MESSAGE_FILE_MODE.

    The run directory belongs to the task, which may have planted links in it; none is ever followed. The
    directory is opened O_NOFOLLOW and everything after is relative to it; the temporary file is created with
    O_EXCL | O_NOFOLLOW under a fresh random name (a link or file already under that name fails the create, and
    another name is tried), written through its descriptor, and renamed onto `name`: a rename replaces a link
    planted under `name` instead of writing where it points. ValueError for a name that is not a plain file name;
    OSError when it cannot be written (no temporary file is left)."""
    problem = file_name_problem(name)
    if problem is not None:
        raise ValueError(f"{quoted(name)}: {problem}")
    directory = os.open(sandbox, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if owner is None:
            st = os.fstat(directory)
            owner = (st.st_uid, st.st_gid)
        temp, fd = _create_temp(directory, token)
        try:
            try:
                if os.geteuid() == 0:
                    os.fchown(fd, *owner)
                os.fchmod(fd, MESSAGE_FILE_MODE)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=directory)
            raise
    finally:
        os.close(directory)


def _create_temp(directory: int, token: Callable[[], str]) -> tuple[str, int]:
    """A new temporary file in `directory` (a descriptor): its name and an open descriptor of it."""
    attempts = 0
    while True:
        temp = f".aiomesos-message.{token()}.tmp"
        try:
            return temp, os.open(temp, _NEW_FILE, MESSAGE_FILE_MODE, dir_fd=directory)
        except FileExistsError:
            attempts += 1
            if attempts == _TEMP_ATTEMPTS:
                raise


def make_traversable_dirs(path: str) -> None:
    """os.makedirs, each directory it creates TRAVERSABLE whatever the umask."""
    try:
        os.mkdir(path, TRAVERSABLE)
    except FileExistsError:
        return
    except FileNotFoundError:
        make_traversable_dirs(os.path.dirname(path))
        try:
            os.mkdir(path, TRAVERSABLE)
        except FileExistsError:
            return
    os.chmod(path, TRAVERSABLE)


def encode_id(value: str) -> str:
    """A framework or task id as one directory name, injectively: the characters of `_PLAIN` stay, every other
    byte of the id's UTF-8 (`%` included) is `%XX`; "." and ".." (and "") are spelled with escapes only. An id
    whose name would pass NAME_MAX (255 bytes) keeps a prefix and ends with `%%` and a hash of the whole id:
    such a name is still unique, though `decode_id` cannot give the id back."""
    if not value:
        return "%"
    if value in (".", ".."):
        return "%2E" * len(value)
    encoded = "".join(c if c in _PLAIN else "".join(f"%{b:02X}" for b in c.encode()) for c in value)
    if len(encoded) <= _NAME_MAX:
        return encoded
    digest = hashlib.sha256(value.encode()).hexdigest()[:40]
    head = encoded[: _NAME_MAX - 2 - len(digest)]
    cut = head.rfind("%", len(head) - 2)  # do not end inside an escape
    return f"{head[:cut] if cut >= 0 else head}%%{digest}"


def decode_id(name: str) -> str | None:
    """The id `encode_id` made `name` from; None when it is not such a name (or a hashed long one)."""
    if name == "%":
        return ""
    if "%%" in name:
        return None
    out = bytearray()
    i = 0
    while i < len(name):
        c = name[i]
        if c == "%":
            digits = name[i + 1 : i + 3]
            if len(digits) != 2 or any(d not in "0123456789ABCDEF" for d in digits):
                return None
            out.append(int(digits, 16))
            i += 3
        elif c in _PLAIN:
            out.append(ord(c))
            i += 1
        else:
            return None
    try:
        value = out.decode()
    except UnicodeDecodeError:
        return None
    return value if encode_id(value) == name else None


def run_dirs(
    work_dir: Path, framework_dir: str | None = None, executor_dir: str | None = None
) -> Iterator[tuple[str, str, Path]]:
    """(agent directory name, framework directory name, run directory) for every run directory of the layout
    (of that framework directory, of that executor directory, when given), over every agent id the work dir has
    held. Nothing below the work dir is followed: every component is a real directory (lstat), so a task that
    replaced one with a link (one running as root can) does not lead the caller elsewhere; `runs/latest` is not
    a run."""
    for agent_dir in _subdirs(work_dir / "agents"):
        frameworks = agent_dir / "frameworks"
        fw_names = [framework_dir] if framework_dir else [p.name for p in _subdirs(frameworks)]
        for fw_name in fw_names:
            executors = frameworks / fw_name / "executors"
            ex_names = [executor_dir] if executor_dir else [p.name for p in _subdirs(executors)]
            for ex_name in ex_names:
                if _is_real_dir(executors / ex_name):
                    for run in _subdirs(executors / ex_name / "runs"):
                        yield agent_dir.name, fw_name, run


def latest_runs(work_dir: Path, framework_id: str | None, task_id: str, *, prefer_agent: str) -> dict[str, Path]:
    """The newest run directory of a task's executor under each framework directory (all of them, or that of
    `framework_id`), over every agent id the work dir has held, `prefer_agent`'s first: framework directory
    name -> run directory. Found by `run_dirs`, so never through `runs/latest`, which a task running as root
    could repoint: the newest run is the one whose directory changed last (ctime, which no task can set)."""
    best: dict[str, tuple[tuple[bool, float], Path]] = {}
    fw_dir = encode_id(framework_id) if framework_id else None
    for agent_dir, fw_name, run in run_dirs(work_dir, fw_dir, encode_id(task_id)):
        try:
            rank = (agent_dir == prefer_agent, run.lstat().st_ctime)
        except OSError:  # removed meanwhile (the GC)
            continue
        if fw_name not in best or rank > best[fw_name][0]:
            best[fw_name] = (rank, run)
    return {name: run for name, (_, run) in best.items()}


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _subdirs(path: Path) -> list[Path]:
    """The real directories (not links to one) in `path`, which must be one itself (components above it are
    the caller's to check)."""
    if not _is_real_dir(path):
        return []
    try:
        with os.scandir(path) as it:
            return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def secure_work_dir(work_dir: Path) -> list[Path]:
    """Make an agent's work dir what the layout needs: the work dir and `agents/` traversable (so that tasks
    running as other users reach their sandboxes), the agent's own records (`meta/`: task infos and their
    environment; `runtime/`: the containers' records) its alone. Returns the directories above the work dir that
    other users cannot traverse (the tasks running as them cannot reach their sandbox by its path then)."""
    mode = stat.S_IMODE(os.stat(work_dir).st_mode)
    if mode & 0o011 != 0o011:
        os.chmod(work_dir, mode | 0o011)
    for name, wanted in (("agents", TRAVERSABLE), ("meta", 0o700), ("runtime", 0o700)):
        path = work_dir / name
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, wanted)
        if stat.S_ISDIR(path.lstat().st_mode):  # (what is not is refused where it is used)
            os.chmod(path, wanted)
    return [p for p in work_dir.parents if not os.stat(p).st_mode & 0o001]
