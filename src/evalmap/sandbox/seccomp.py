"""A seccomp filter that stops model code from creating user namespaces.

As root, the sandbox runs without a user namespace of its own (one would map its uid to
host root), so bwrap's `--disable-userns` is not available there. An unprivileged process
can still create a user namespace and gain every capability inside it, which exposes much
kernel code that is otherwise reachable only by root. This classic-BPF filter, handed to
bwrap's `--seccomp`, makes unshare() and clone() with CLONE_NEWUSER fail with EPERM and
clone3() (whose flags BPF cannot read) fail with ENOSYS, so that libc falls back to clone().
Everything else is allowed. Only x86_64 and aarch64 are described; elsewhere there is no filter.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# linux/filter.h and linux/seccomp.h
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_CLONE_NEWUSER = 0x10000000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (arg0's low word, little-endian)
_X32_BIT = 0x40000000

# machine -> (AUDIT_ARCH, unshare, clone, clone3)
_SYSCALLS = {
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def no_userns_filter() -> bytes | None:
    """The filter program (struct sock_filter[]) for this machine, or None where none is described."""
    found = _SYSCALLS.get(platform.machine())
    if found is None:
        return None
    arch, unshare, clone, clone3 = found
    deny, nosys = _ERRNO | errno.EPERM, _ERRNO | errno.ENOSYS
    program = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, arch, jt=1),  # another ABI (e.g. 32-bit calls): refuse it outright
        _op(_RET_K, deny),
        _op(_LD_W_ABS, _NR),
        _op(_JGE_K, _X32_BIT, jt=0, jf=1),  # x32 numbers would bypass the checks below
        _op(_RET_K, deny),
        _op(_JEQ_K, clone3, jt=0, jf=1),
        _op(_RET_K, nosys),
        _op(_JEQ_K, unshare, jt=1),
        _op(_JEQ_K, clone, jt=0, jf=3),
        _op(_LD_W_ABS, _ARG0),
        _op(_JSET_K, _CLONE_NEWUSER, jt=0, jf=1),
        _op(_RET_K, deny),
        _op(_RET_K, _ALLOW),
    ]
    return b"".join(program)


def filter_fd() -> int | None:
    """An inheritable memfd holding the filter, for bwrap's --seccomp (the caller closes it)."""
    program = no_userns_filter()
    if program is None:
        return None
    fd = os.memfd_create("evalmap-seccomp", os.MFD_CLOEXEC)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
