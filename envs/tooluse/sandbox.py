"""Run untrusted Python behind an OS boundary: bubblewrap namespaces, a tmpfs scratch directory
as the only writable path, resource limits, an audit hook as a second layer, output truncated.

The default isolation, ``"bwrap"``, starts the program with `bubblewrap
<https://github.com/containers/bubblewrap>`_ (Debian package ``bubblewrap``):

1. New PID, mount, network, IPC, UTS (and cgroup) namespaces. The program sees its own
   ``/proc`` (only its own processes: nothing of the parent's), a minimal ``/dev`` (null, zero,
   random, urandom, tty ...), no network at all (only a loopback interface of its own), and a
   file system made of read-only binds of ``/usr`` and the Python installation, nothing else:
   no ``/etc``, no ``/home``, no ``/root``, no ``/work``.
2. The only writable path is ``/scratch``, a fresh tmpfs of at most ``max_disk_mb`` (total
   bytes, whatever the number of files), which is also the working directory, ``HOME`` and
   ``TMPDIR`` (``/tmp`` points to it, unless the Python installation itself lives under ``/tmp``:
   then ``/tmp`` holds only the read-only way to it). It disappears with the namespace.
3. The environment is cleared (``PATH``, ``HOME``, ``TMPDIR``, ``LANG`` and thread counts only).
4. When the caller is root, bubblewrap runs privileged with only ``CAP_SETUID``/``CAP_SETGID``
   kept, and the bootstrap switches to an unused high uid (one per run) before it reads a byte
   of the program: the program has no capability, owns no file outside ``/scratch``, and
   ``RLIMIT_NPROC`` applies to it (root is exempt from it). As another user, bubblewrap runs
   unprivileged in a new user namespace with nested user namespaces disabled.
5. A seccomp filter (x86-64) refuses new user namespaces, ``setns``, ``mount``, ``ptrace``,
   ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring``, kernel keyrings, module loading
   and ``open_by_handle_at``.
6. ``setrlimit`` limits: ``RLIMIT_AS`` (memory per process), ``RLIMIT_CPU``, ``RLIMIT_FSIZE``
   (largest file), ``RLIMIT_NPROC`` (processes and threads), no core files.
7. The PEP 578 audit hook of the in-process mode (below) still runs inside, as a second layer.
8. At the wall-clock limit the parent kills bubblewrap's process group; ``--die-with-parent``
   then kills the namespace's init, and the kernel kills every process left in the PID
   namespace (``setsid`` and double forks included).

Where bubblewrap is missing (or cannot create namespaces) :func:`run_python` raises
:class:`SandboxUnavailableError` with one line saying so. The weaker ``isolation="process"``
mode, which must be asked for by name, runs a plain subprocess with the same limits and the
audit hook only (dropping to ``nobody`` when root and ``nobody`` can read Python). That mode
contains an agent's mistakes, not a determined attacker: the hook can be bypassed from Python
(native memory writes through bugs, races between the check and the call).

What the bwrap mode does not contain: a kernel exploit (the kernel is shared); CPU and memory
beyond the per-process limits times ``max_processes`` (no cgroup is used); reading the
world-readable files of ``/usr`` and of the Python installation. The attack regression suite is
``tests/test_sandbox.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import shutil
import signal
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

from agentq.errors import UserInputError

ISOLATIONS = ("bwrap", "process")
"""The isolation modes of :func:`run_python`: ``bwrap`` (the OS boundary, the default) and
``process`` (a plain subprocess with limits and the audit hook: weaker, opt-in by name)."""

SCRATCH = "/scratch"
"""The writable directory inside the bwrap sandbox."""


class SandboxUnavailableError(UserInputError):
    """The requested isolation cannot be provided here (bubblewrap missing or not working)."""


_BOOTSTRAP = r'''
import json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
SCRATCH = os.path.realpath(cfg["scratch"])
with open(cfg["code"], encoding="utf-8") as f:
    SOURCE = f.read()
HOOK = cfg.get("hook", True)
os.chdir(SCRATCH)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
def _lim(which, value):
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        if cfg.get("strict"):
            sys.exit("sandbox: could not set a resource limit")
_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_CPU, cfg["cpu_s"])
_lim(resource.RLIMIT_FSIZE, cfg["fsize"])
if cfg.get("uid") is not None:
    # bwrap as root (or the in-process mode as root): become an unprivileged user before any
    # untrusted byte runs; setuid away from 0 clears every capability
    os.setgroups([])
    os.setgid(cfg["gid"])
    os.setuid(cfg["uid"])
    if os.getuid() != cfg["uid"] or os.geteuid() != cfg["uid"]:
        sys.exit("sandbox: could not drop privileges")
_lim(resource.RLIMIT_NPROC, cfg["nproc"])
_lim(resource.RLIMIT_AS, cfg["memory"])

import posix

def _make_hook(scratch):
    """The audit hook. Everything it uses is bound as a default argument (immutable tuples,
    strings and C functions), so user code cannot change its decisions by patching modules,
    builtins or this module's globals; setting a function's defaults or code, tracing, and
    the gc introspection that could reach it are refused."""

    def _real(p, _cwd=posix.getcwd, _lstat=posix.lstat, _readlink=posix.readlink, _OSError=OSError):
        # realpath from C functions only (os.path is Python code user code could patch)
        if p[:1] != "/":
            p = _cwd() + "/" + p
        pending = p.split("/")
        pending.reverse()
        out = []
        links = 0
        while pending:
            part = pending.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if out:
                    out.pop()
                continue
            cur = "/" + "/".join(out + [part])
            try:
                mode = _lstat(cur).st_mode
            except _OSError:
                mode = 0
            if mode & 0o170000 == 0o120000:
                links += 1
                if links > 40:
                    return None
                target = _readlink(cur)
                if target[:1] == "/":
                    out = []
                more = target.split("/")
                more.reverse()
                pending.extend(more)
                continue
            out.append(part)
        return "/" + "/".join(out)

    def _hook(
        event,
        args,
        _scratch=scratch,
        _prefix=scratch + "/",
        _real=_real,
        _fspath=posix.fspath,
        _readlink=posix.readlink,
        _str=str,
        _bytes=bytes,
        _str_copy=str.__str__,
        _bytes_decode=bytes.decode,
        _int=int,
        _isinstance=isinstance,
        _len=len,
        _PermissionError=PermissionError,
        _write_flags=posix.O_WRONLY | posix.O_RDWR | posix.O_APPEND | posix.O_CREAT | posix.O_TRUNC,
        _blocked=(
            ("os.fork", "starting processes (fork)"),
            ("os.forkpty", "starting processes (fork)"),
            ("os.posix_spawn", "starting processes (spawn)"),
            ("os.exec", "starting programs (exec)"),
            ("os.spawn", "starting processes (spawn)"),
            ("os.system", "running shell commands"),
            ("os.startfile", "starting programs"),
            ("subprocess.Popen", "starting processes (subprocess)"),
            ("os.kill", "sending signals"),
            ("os.killpg", "sending signals"),
            ("signal.pthread_kill", "sending signals"),
            ("ctypes.dlopen", "loading native libraries (ctypes)"),
            ("ctypes.dlsym", "calling native code (ctypes)"),
            ("ctypes.dlsym/handle", "calling native code (ctypes)"),
            ("ctypes.call_function", "calling native code (ctypes)"),
            ("ctypes.cdata", "raw memory access (ctypes from_address)"),
            ("ctypes.string_at", "raw memory access (ctypes)"),
            ("ctypes.wstring_at", "raw memory access (ctypes)"),
            ("resource.setrlimit", "changing resource limits"),
            ("resource.prlimit", "changing resource limits"),
            ("os.setuid", "changing user"),
            ("os.chroot", "changing the root directory"),
            ("sys.settrace", "tracing"),
            ("sys.setprofile", "profiling hooks"),
            ("gc.get_objects", "gc introspection"),
            ("gc.get_referrers", "gc introspection"),
            ("gc.get_referents", "gc introspection"),
        ),
        _blocked_imports=("_posixsubprocess",),
        _guarded_attrs=("__code__", "__defaults__", "__kwdefaults__"),
        _function=type(_real),
        _boot=__file__,
        # event -> (positions of paths that must lie inside the scratch directory,
        #           positions of dir_fd arguments, which must be unset)
        _path_events=(
            ("os.remove", (0,), (1,)),
            ("os.rmdir", (0,), (1,)),
            ("os.mkdir", (0,), (2,)),
            ("os.rename", (0, 1), (2, 3)),
            ("os.symlink", (1,), (2,)),
            ("os.link", (0, 1), (2, 3)),
            ("os.chmod", (0,), (2,)),
            ("os.chown", (0,), (3,)),
            ("os.utime", (0,), (3,)),
            ("os.truncate", (0,), ()),
            ("os.chflags", (0,), ()),
            ("os.lchflags", (0,), ()),
            ("os.setxattr", (0,), ()),
            ("os.removexattr", (0,), ()),
            ("os.mkfifo", (0,), (2,)),
            ("os.mknod", (0,), (3,)),
            ("shutil.rmtree", (0,), ()),
            ("shutil.copyfile", (1,), ()),
            ("shutil.copytree", (1,), ()),
            ("shutil.move", (1,), ()),
        ),
    ):
        def text(path):
            # exact str/bytes copies: a subclass overriding split/decode/__fspath__ cannot make
            # the check see one path while the call opens another
            if _isinstance(path, _str):
                return _str_copy(path)
            if _isinstance(path, _bytes):
                return _bytes_decode(path, "utf-8", "surrogateescape")
            return text(_fspath(path))

        def inside(path, dir_fd=None):
            # resolve descriptors and dir_fd-relative paths through /proc/self/fd
            try:
                if _isinstance(path, _int):
                    full = _readlink("/proc/self/fd/" + _str(path))
                else:
                    full = text(path)
                    if dir_fd is not None and dir_fd != -1 and full[:1] != "/":
                        full = _readlink("/proc/self/fd/" + _str(dir_fd)) + "/" + full
                real = _real(full)
            except BaseException:
                return False
            return real is not None and (real == _scratch or real[: _len(_prefix)] == _prefix)

        if event[:7] == "socket.":
            raise _PermissionError("sandbox: network access is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (_isinstance(flags, _int) and flags & _write_flags) or (
                _isinstance(mode, _str) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)
            )
            if writing and path is not None:
                if mode is None and not _isinstance(path, _int) and text(path)[:1] != "/":
                    # os.open may carry a dir_fd the event does not show
                    raise _PermissionError(
                        "sandbox: os.open for writing needs an absolute path inside the working "
                        "directory (or use open())"
                    )
                if not inside(path):
                    shown = path if _isinstance(path, _int) else text(path)
                    raise _PermissionError(
                        f"sandbox: writing outside the working directory ({shown!r}) is not allowed"
                    )
            return
        if event == "import":
            if args:
                name = text(args[0]) if _isinstance(args[0], (_str, _bytes)) else ""
                where = text(args[1]) if _len(args) > 1 and _isinstance(args[1], _str) else ""
                for blocked in _blocked_imports:
                    # by name, and by file (the same extension loaded under another name)
                    if name == blocked or where.find("/" + blocked + ".") != -1:
                        raise _PermissionError(f"sandbox: importing {blocked} is not allowed")
            return
        if event == "object.__setattr__":
            # the sandbox's own functions (this hook) cannot get new code or defaults
            if (
                _len(args) > 1
                and args[1] in _guarded_attrs
                and _isinstance(args[0], _function)
                and args[0].__code__.co_filename == _boot
            ):
                raise _PermissionError(f"sandbox: setting {args[1]} is not allowed")
            return
        for name, what in _blocked:
            if event == name:
                raise _PermissionError(f"sandbox: {what} is not allowed")
        for name, paths, fds in _path_events:
            if event == name:
                dir_fds = [args[i] for i in fds if i < _len(args)]
                for k, i in enumerate(paths):
                    if i >= _len(args) or args[i] is None:
                        continue
                    dir_fd = dir_fds[k] if k < _len(dir_fds) else (dir_fds[0] if dir_fds else None)
                    if not inside(args[i], dir_fd):
                        shown = args[i] if _isinstance(args[i], _int) else text(args[i])
                        raise _PermissionError(
                            f"sandbox: changing files outside the working directory ({shown!r}) is not allowed"
                        )
                return

    return _hook

import ast, traceback
import ctypes  # noqa: F401  (loads libpython's handle now; later dlopen/dlsym are refused)
BOOT = __file__

def _clean(exc):
    """Format an exception without the sandbox's own frames."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    def strip(t):
        t.stack = traceback.StackSummary.from_list(
            [fr for fr in t.stack if fr.filename != BOOT]
        )
        for sub in (t.__cause__, t.__context__):
            if sub is not None:
                strip(sub)
    strip(te)
    return "".join(te.format())

try:
    tree = ast.parse(SOURCE, filename="<code>")
except SyntaxError:
    traceback.print_exc(limit=0)
    sys.exit(1)
last = None
if tree.body and isinstance(tree.body[-1], ast.Expr):
    last = ast.Expression(tree.body.pop().value)
body = compile(tree, "<code>", "exec")
tail = compile(last, "<code>", "eval") if last is not None else None
ns = {"__name__": "__main__", "__builtins__": __builtins__}
del cfg, f
if HOOK:
    sys.addaudithook(_make_hook(SCRATCH))
del _make_hook
try:
    exec(body, ns)
    if tail is not None:
        value = eval(tail, ns)
        if value is not None:
            print(repr(value))
except MemoryError:
    sys.stdout.flush()
    print(f"MemoryError: out of memory (the memory limit is {MEMORY_MB} MB)", file=sys.stderr)
    sys.exit(1)
except SystemExit:
    raise
except BaseException as e:
    sys.stdout.flush()
    sys.stderr.write(_clean(e))
    sys.exit(1)
'''


@dataclass
class SandboxResult:
    """What a sandboxed run produced."""

    output: str
    """stdout and stderr interleaved, truncated to ``max_output_chars``."""
    exit_code: int | None
    """The exit status; negative for a signal (``-9`` = SIGKILL); None if never started."""
    timed_out: bool = False
    truncated: bool = False
    error: str | None = None
    """A sandbox-level problem (time limit, killed by a signal), in words."""

    @property
    def ok(self) -> bool:
        """True when the program exited with status 0 within the limits."""
        return self.exit_code == 0 and not self.timed_out

    @property
    def observation(self) -> str:
        """The text an agent sees."""
        parts = []
        out = self.output.rstrip("\n")
        if out:
            parts.append(out)
        if self.error:
            parts.append(f"Error: {self.error}")
        if not parts:
            parts.append("(no output; use print() to show values)")
        return "\n".join(parts)


# -- seccomp (x86-64) --------------------------------------------------------------------------
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_CLONE_NEWUSER = 0x10000000
_RET_ALLOW = 0x7FFF0000
_RET_EPERM = 0x00050000 | 1
_RET_ENOSYS = 0x00050000 | 38
_SYSCALLS_REFUSED_X86_64 = {
    "ptrace": 101,
    "pivot_root": 155,
    "mount": 165,
    "umount2": 166,
    "init_module": 175,
    "delete_module": 176,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "kexec_load": 246,
    "perf_event_open": 298,
    "open_by_handle_at": 304,
    "setns": 308,
    "finit_module": 313,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsmount": 432,
}
_SYS_CLONE, _SYS_CLONE3 = 56, 435


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def seccomp_filter() -> bytes | None:
    """The classic-BPF seccomp program bubblewrap loads (``--seccomp FD``), or None off x86-64.

    It refuses (EPERM) the system calls in ``_SYSCALLS_REFUSED_X86_64``, ``clone`` with
    ``CLONE_NEWUSER``, and the x32 ABI; ``clone3`` answers ENOSYS so libc falls back to
    ``clone``, whose flags the filter can read. Everything else is allowed.
    """
    if platform.machine() not in ("x86_64", "AMD64") or sys.byteorder != "little":
        return None
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    refused = sorted(_SYSCALLS_REFUSED_X86_64.values())
    prog = [
        _bpf(ld, 0, 0, 4),  # arch
        _bpf(jeq, 1, 0, _AUDIT_ARCH_X86_64),
        _bpf(ret, 0, 0, _RET_EPERM),
        _bpf(ld, 0, 0, 0),  # syscall number
        _bpf(jge, 0, 1, _X32_BIT),
        _bpf(ret, 0, 0, _RET_EPERM),
        _bpf(jeq, 0, 1, _SYS_CLONE3),
        _bpf(ret, 0, 0, _RET_ENOSYS),
        _bpf(jeq, 0, 3, _SYS_CLONE),
        _bpf(ld, 0, 0, 16),  # clone flags (low 32 bits of args[0])
        _bpf(jset, 0, 1, _CLONE_NEWUSER),
        _bpf(ret, 0, 0, _RET_EPERM),
    ]
    # both edges (not clone; clone without CLONE_NEWUSER) land here: reload the number
    tail = [_bpf(ld, 0, 0, 0)]
    for i, nr in enumerate(refused):
        left = len(refused) - i - 1  # comparisons after this one
        tail.append(_bpf(jeq, left + 1, 0, nr))
    tail.append(_bpf(ret, 0, 0, _RET_ALLOW))
    tail.append(_bpf(ret, 0, 0, _RET_EPERM))
    return b"".join(prog + tail)


# -- bubblewrap ---------------------------------------------------------------------------------
_PROBED: dict[str, str | None] = {}
_PROBE_LOCK = threading.Lock()
_UIDS = itertools.count()
_UID_BASE = 0x50000000


def _sandbox_ids() -> tuple[int, int]:
    """An unused high uid/gid for one run (distinct per run, so RLIMIT_NPROC is per run)."""
    k = next(_UIDS)
    uid = _UID_BASE + ((os.getpid() & 0xFFFF) << 12) + (k & 0xFFF)
    return uid, uid


def python_roots() -> list[str]:
    """The directories of the Python installation outside ``/usr`` that the sandbox binds
    read-only (none inside another)."""
    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    roots = {os.path.realpath(p) for p in paths} | {os.path.abspath(p) for p in paths}
    roots = {r for r in roots if os.path.isdir(r) and r != "/usr" and not r.startswith("/usr/")}
    return sorted(r for r in roots if not any(r.startswith(o + "/") for o in roots))


def _system_binds() -> list[str]:
    """Read-only binds of ``/usr`` (and its merged-usr symlinks) and the Python installation.

    The directories above a bound Python prefix (``/root`` for pyenv under root) are created
    searchable (0755) and empty, so the sandbox user reaches the prefix and nothing beside it.
    """
    args: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    keep = python_roots()
    parents: set[str] = set()
    for r in keep:
        d = os.path.dirname(r)
        while d != "/":
            parents.add(d)
            d = os.path.dirname(d)
    for d in sorted(parents, key=lambda x: (x.count("/"), x)):
        args += ["--perms", "0755", "--dir", d]
    for r in keep:
        args += ["--ro-bind", r, r]
    return args


def bwrap_argv(
    runner: str,
    *,
    privileged: bool,
    max_disk_mb: int,
    seccomp_fd: int | None,
) -> list[str]:
    """The bubblewrap command line (before ``--`` and the program) for one run.

    ``runner`` holds the bootstrap and the program and is bound read-only at ``/sandbox``.
    """
    exe = shutil.which("bwrap")
    if exe is None:
        raise SandboxUnavailableError(_MISSING)
    args = [exe, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--hostname", "sandbox", "--die-with-parent"]
    args += ["--new-session", "--clearenv"]
    if privileged:
        # root: keep only what the bootstrap needs to switch to the sandbox uid
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += _system_binds()
    args += ["--ro-bind", runner, "/sandbox", "--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(int(max_disk_mb) * 1024 * 1024), "--perms", "1777"]
    args += ["--tmpfs", SCRATCH]
    if not any(r == "/tmp" or r.startswith("/tmp/") for r in python_roots()):
        # /tmp points to the scratch directory, unless the Python installation lives under
        # /tmp (a checkout's .venv there): then /tmp is the read-only way to it, and TMPDIR
        # (the scratch directory) is where temporary files go
        args += ["--symlink", SCRATCH, "/tmp"]
    args += ["--chdir", SCRATCH]
    for k, v in _sandbox_env(SCRATCH).items():
        args += ["--setenv", k, v]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    return args


_MISSING = (
    "the python sandbox needs bubblewrap (bwrap), which is not installed: install it "
    "(apt-get install bubblewrap) or opt in to the weaker in-process sandbox with "
    "isolation='process' (env option python_isolation=process)"
)


def check_isolation(isolation: str) -> None:
    """Raise :class:`SandboxUnavailableError` unless ``isolation`` works on this machine.

    ``bwrap`` is probed once per process (a trivial program in the full sandbox); ``process``
    always works. An unknown name is a :class:`~agentq.errors.UserInputError`.
    """
    if isolation not in ISOLATIONS:
        raise UserInputError(f"unknown sandbox isolation {isolation!r}; use one of {ISOLATIONS}")
    if isolation != "bwrap":
        return
    with _PROBE_LOCK:
        if "bwrap" not in _PROBED:
            _PROBED["bwrap"] = _probe_bwrap()
        problem = _PROBED["bwrap"]
    if problem is not None:
        raise SandboxUnavailableError(problem)


def _probe_bwrap() -> str | None:
    if shutil.which("bwrap") is None:
        return _MISSING
    r = run_python("print(6 * 7)", timeout_s=30, isolation="bwrap", _probe=True)
    if r.output.strip() == "42" and r.exit_code == 0:
        return None
    detail = " ".join(r.output.split())[:200] or r.error or f"exit code {r.exit_code}"
    return (
        f"bubblewrap is installed but cannot build the python sandbox here ({detail}); "
        "allow namespaces, or opt in to the weaker sandbox with isolation='process'"
    )


def _sandbox_env(scratch: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# -- the in-process mode's privilege drop ---------------------------------------------------------
def _world_readable(path: str) -> bool:
    """True when every directory on the way to ``path`` can be searched by any user."""
    p = os.path.realpath(path)
    while True:
        try:
            st = os.stat(p)
        except OSError:
            return False
        if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(p)
        if parent == p:
            return True
        p = parent


_NOBODY: list[tuple[int, int] | None] = []


def _nobody() -> tuple[int, int] | None:
    """(uid, gid) of ``nobody`` when running as root and ``nobody`` can still run Python."""
    if _NOBODY:
        return _NOBODY[0]
    _NOBODY.append(_find_nobody())
    return _NOBODY[0]


def _find_nobody() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    paths = [sys.executable, os.path.dirname(os.__file__), sysconfig.get_paths()["purelib"]]
    if not all(_world_readable(p) for p in paths):
        return None  # e.g. Python under /root: the child stays root, the audit hook guards
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
    except (KeyError, ImportError):
        return None
    return entry.pw_uid, entry.pw_gid


# -- running ----------------------------------------------------------------------------------------
def run_python(
    code: str,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    max_output_chars: int = 4000,
    max_processes: int = 64,
    max_file_mb: int = 16,
    drop_privileges: bool = True,
    *,
    isolation: str = "bwrap",
    max_disk_mb: int = 64,
    audit_hook: bool = True,
    _probe: bool = False,
) -> SandboxResult:
    """Run ``code`` in a fresh sandboxed Python process and collect its output.

    ``isolation`` is ``"bwrap"`` (the OS boundary; :class:`SandboxUnavailableError` where
    bubblewrap is missing or cannot create namespaces) or ``"process"`` (limits and the audit
    hook only: opt in by name). ``timeout_s`` is the wall-clock limit (the CPU limit is one
    second more); ``memory_mb`` the address-space limit per process; ``max_processes`` the
    ``RLIMIT_NPROC`` (processes and threads); ``max_file_mb`` the largest file; ``max_disk_mb``
    the total size of the scratch tmpfs (bwrap). ``drop_privileges`` applies to the process
    mode (switch to ``nobody`` when root). ``audit_hook=False`` leaves out the in-process layer
    (bwrap only: the attack tests use it to check that the OS boundary holds on its own). The
    scratch directory is the working directory, ``HOME`` and ``TMPDIR``, and is gone after the
    run.
    """
    if isolation not in ISOLATIONS:
        raise UserInputError(f"unknown sandbox isolation {isolation!r}; use one of {ISOLATIONS}")
    if not audit_hook and isolation != "bwrap":
        raise ValueError("audit_hook=False is only allowed with isolation='bwrap'")
    if isolation == "bwrap" and not _probe:
        check_isolation("bwrap")
    runner = tempfile.mkdtemp(prefix="agentq-py-")
    seccomp_r: int | None = None
    try:
        os.chmod(runner, 0o711)
        code_path = os.path.join(runner, "code.py")
        boot_path = os.path.join(runner, "bootstrap.py")
        out_path = os.path.join(runner, "output.txt")
        with open(code_path, "w", encoding="utf-8") as f:
            f.write(code)
        with open(boot_path, "w", encoding="utf-8") as f:
            f.write(f"MEMORY_MB = {int(memory_mb)}\n" + _BOOTSTRAP)
        cfg: dict[str, Any] = {
            "memory": int(memory_mb) * 1024 * 1024,
            "cpu_s": int(timeout_s) + 1,
            "fsize": int(max_file_mb) * 1024 * 1024,
            "nproc": int(max_processes),
            "hook": bool(audit_hook),
        }
        pass_fds: tuple[int, ...] = ()
        info_r: int | None = None
        if isolation == "bwrap":
            privileged = os.geteuid() == 0
            ids = _sandbox_ids() if privileged else None
            prog = seccomp_filter()
            if prog is not None:
                seccomp_r, w = os.pipe()
                os.write(w, prog)  # a few hundred bytes: fits the pipe buffer
                os.close(w)
                pass_fds = (seccomp_r,)
            cfg.update(scratch=SCRATCH, code="/sandbox/code.py", strict=True)
            cfg.update(uid=ids[0] if ids else None, gid=ids[1] if ids else None)
            info_r, info_w = os.pipe()
            pass_fds += (info_w,)
            argv = bwrap_argv(
                runner, privileged=privileged, max_disk_mb=max_disk_mb, seccomp_fd=seccomp_r
            )
            argv += ["--info-fd", str(info_w)]
            argv += ["--", sys.executable, "-I", "-X", "utf8", "/sandbox/bootstrap.py"]
            argv.append(json.dumps(cfg))
            cwd, env = "/", {"PATH": "/usr/bin:/bin"}
        else:
            scratch = os.path.join(runner, "scratch")
            os.mkdir(scratch, 0o700)
            nob = _nobody() if drop_privileges else None
            if nob is not None:
                os.chown(scratch, nob[0], nob[1])
            cfg.update(scratch=scratch, code=code_path)
            cfg.update(uid=nob[0] if nob else None, gid=nob[1] if nob else None)
            argv = [sys.executable, "-I", "-X", "utf8", boot_path, json.dumps(cfg)]
            cwd, env = scratch, _sandbox_env(scratch)
        timed_out = False
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=pass_fds,
            )
            for fd in pass_fds:
                os.close(fd)
            seccomp_r = None  # closed above (it was in pass_fds)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_all(proc, info_r)
                info_r = None
        return _result(out_path, proc.returncode, timed_out, timeout_s, max_output_chars)
    finally:
        for left in (seccomp_r, info_r):
            if left is not None:
                os.close(left)
        shutil.rmtree(runner, ignore_errors=True)


def _namespace_init(info_r: int) -> int | None:
    """The host pid of the sandbox's PID-namespace init, from bubblewrap's ``--info-fd``."""
    import select

    data = b""
    while select.select([info_r], [], [], 2.0)[0]:
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _kill_all(proc: subprocess.Popen[bytes], info_r: int | None) -> None:
    """Kill everything the run started, and return only when it is gone.

    Under bwrap: SIGKILL the PID namespace's init (the kernel then kills every process in the
    namespace, and bubblewrap exits once init has reaped them all), wait for bubblewrap, and
    kill its process group as a fallback. In the process mode: the process group.
    """
    if info_r is not None:
        try:
            pid = _namespace_init(info_r) if proc.poll() is None else None
            if pid is not None:
                pidfd = os.pidfd_open(pid)
                try:
                    if proc.poll() is None:
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                finally:
                    os.close(pidfd)
        except OSError:
            pass
        finally:
            os.close(info_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _result(
    out_path: str, code_: int | None, timed_out: bool, timeout_s: float, max_output_chars: int
) -> SandboxResult:
    with open(out_path, "rb") as f:
        raw = f.read(max_output_chars * 4 + 4)
        size = os.fstat(f.fileno()).st_size
    text = raw.decode("utf-8", errors="replace")
    truncated = len(text) > max_output_chars or size > len(raw)
    if truncated:
        text = (
            text[:max_output_chars] + f"\n... [output truncated to {max_output_chars} characters]"
        )
    error = None
    if timed_out:
        error = f"execution timed out after {timeout_s:g} s (time limit); the program was stopped"
    elif code_ is not None and code_ < 0:
        sig = -code_
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        why = {
            "SIGXCPU": "the CPU time limit",
            "SIGKILL": "a resource limit (memory or time)",
            "SIGSEGV": "a crash (possibly the memory limit)",
            "SIGABRT": "an abort (possibly the memory limit)",
            "SIGXFSZ": "the file size limit",
        }.get(name, "a signal")
        error = f"the program was killed by {name} ({why})"
    return SandboxResult(text, code_, timed_out=timed_out, truncated=truncated, error=error)


__all__ = [
    "ISOLATIONS",
    "SCRATCH",
    "SandboxResult",
    "SandboxUnavailableError",
    "bwrap_argv",
    "check_isolation",
    "run_python",
    "seccomp_filter",
]
