"""cgroup v2 device control: a tiny eBPF program per container cgroup.

cgroup v2 has no ``devices.deny`` file; the kernel asks a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program
attached to the cgroup instead (as runc and systemd do).  ``deny_program`` builds one that refuses
every access (read, write, mknod) to the given character devices and allows everything else, so a
task is kept off other tasks' GPUs exactly as the v1 ``devices.deny`` lines do.  The program is
loaded with the ``bpf(2)`` system call through ctypes (no compiler, no libbpf) and attached to the
container's cgroup before the task joins it; the kernel keeps it alive while the cgroup exists, so a
re-adopted container after an agent restart stays confined, and removing the cgroup detaches it.

``supported()`` loads a trivial program once: kernels without BPF or seccomp'd sandboxes (gVisor)
answer no, and the agent keeps the environment variables as its only GPU isolation there.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
from collections.abc import Sequence
from pathlib import Path

_NR_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2
_ATTR_SIZE = 128
_DEV_CHAR = 2  # BPF_DEVCG_DEV_CHAR, the low 16 bits of bpf_cgroup_dev_ctx.access_type

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_AND64_K = 0x57
_MOV64_K = 0xB7
_JEQ_K = 0x15
_JNE_K = 0x55
_EXIT = 0x95


def deny_program(deny: Sequence[tuple[int, int]]) -> bytes:
    """Instructions that refuse the character devices (major, minor) in deny and allow the rest.

    r1 points at struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor}; r0 = 1 allows.
    """
    head = [
        _insn(_LDX_W, 2, 1, 0),  # r2 = access_type
        _insn(_AND64_K, 2, imm=0xFFFF),  # r2 = device type
        _insn(_LDX_W, 3, 1, 4),  # r3 = major
        _insn(_LDX_W, 4, 1, 8),  # r4 = minor
    ]
    checks = 1 + 2 * len(deny)  # the type test, then two tests per denied device
    allow = len(head) + checks  # index of "r0 = 1"
    deny_at = allow + 2  # index of "r0 = 0"
    body = [_insn(_JNE_K, 2, imm=_DEV_CHAR, off=allow - (len(head) + 1))]
    for major, minor in deny:
        body.append(_insn(_JNE_K, 3, imm=major, off=1))  # another major: skip the minor test
        here = len(head) + len(body)
        body.append(_insn(_JEQ_K, 4, imm=minor, off=deny_at - (here + 1)))
    tail = [_insn(_MOV64_K, 0, imm=1), _insn(_EXIT)]
    if deny:  # the verifier refuses unreachable instructions
        tail += [_insn(_MOV64_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(head + body + tail)


def _bpf(cmd: int, attr: bytes) -> int:
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, f"bpf(2) is not wired for {platform.machine()}")
    buf = ctypes.create_string_buffer(attr.ljust(_ATTR_SIZE, b"\0"), _ATTR_SIZE)
    result = _libc.syscall(nr, cmd, buf, _ATTR_SIZE)
    if result < 0:
        error_number = ctypes.get_errno()
        raise OSError(error_number, f"bpf({cmd}): {os.strerror(error_number)}")
    return int(result)


def _load(program: bytes) -> int:
    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    attr = struct.pack(
        "<IIQQIIQ",
        _BPF_PROG_TYPE_CGROUP_DEVICE,
        len(program) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        1,  # log level: the verifier says why it refused
        len(log),
        ctypes.addressof(log),
    )
    try:
        return _bpf(_BPF_PROG_LOAD, attr)
    except OSError as e:
        why = log.value.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise OSError(e.errno, f"{e.strerror}{': ' + why[0] if why[0] else ''}") from None


def attach_deny(cgroup_dir: str | Path, deny: Sequence[tuple[int, int]]) -> None:
    """Attach a program refusing the devices in deny to cgroup_dir (a cgroup v2 directory); OSError on failure."""
    program_fd = _load(deny_program(deny))
    try:
        cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(_BPF_PROG_ATTACH, struct.pack("<IIII", cgroup_fd, program_fd, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI))
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(program_fd)  # the attachment holds the program now


@functools.cache
def supported() -> bool:
    """Whether this kernel loads cgroup device programs for us (root, BPF, no sandbox refusing it)."""
    try:
        os.close(_load(deny_program([])))
    except OSError:
        return False
    return True
