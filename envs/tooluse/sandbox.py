"""Run untrusted Python in a subprocess: time, memory, process and file-size limits, no
network, writes only inside a fresh scratch directory, output truncated.

Layers (defence in depth):

1. ``resource.setrlimit`` in the child: ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds),
   ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_NPROC`` (fork loops), ``RLIMIT_CORE`` = 0.
2. When the parent runs as root and ``nobody`` can read the Python installation, the child
   drops to the ``nobody`` user (so ``RLIMIT_NPROC`` applies, which root ignores, and the file
   system's own permissions protect everything outside the scratch directory, which is handed
   to ``nobody``). Otherwise (e.g. Python installed under ``/root``) the audit hook below is
   what stops fork loops and writes.
3. An audit hook (PEP 578), installed before the user's code runs, refuses: every ``socket``
   event (no network), opening a file for writing (and removing, renaming, linking, chmod ...)
   outside the scratch directory, ``fork``/``exec``/``spawn``/``system``/``subprocess``,
   signalling other processes, ``ctypes`` foreign calls and raising resource limits. A refused
   operation raises ``PermissionError("sandbox: ...")``, which the program sees (and may catch);
   its traceback is the observation. The hook's decisions depend only on values bound as its
   default arguments (strings, tuples, C functions such as ``posix.lstat``), so patching
   ``os.path``, ``builtins`` or the bootstrap's globals does not change them; paths are
   resolved with those C functions (symlinks followed, ``dir_fd`` and descriptors through
   ``/proc/self/fd``); giving the hook new code or defaults, tracing, and ``gc`` introspection
   are refused.
4. The parent kills the whole process group at the wall-clock limit, and reads at most
   ``max_output_chars`` of output from a file (so an endless ``print`` cannot fill memory).

This contains an agent's mistakes and the usual attacks (see ``tests/test_tooluse.py``). It is
not a boundary against hostile code with a native-level exploit: for that, also run the
process as an unprivileged user or in a container.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass

_BOOTSTRAP = r'''
import json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
SCRATCH = os.path.realpath(cfg["scratch"])
with open(cfg["code"], encoding="utf-8") as f:
    SOURCE = f.read()
os.chdir(SCRATCH)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
def _lim(which, value):
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass
_lim(resource.RLIMIT_CORE, 0)
_lim(resource.RLIMIT_CPU, cfg["cpu_s"])
_lim(resource.RLIMIT_FSIZE, cfg["fsize"])
if cfg.get("uid") is not None:
    os.setgroups([])
    os.setgid(cfg["gid"])
    os.setuid(cfg["uid"])
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
            if _isinstance(path, _str):
                return path
            if _isinstance(path, _bytes):
                return path.decode("utf-8", "surrogateescape")
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
            if args and args[0] in _blocked_imports:
                raise _PermissionError(f"sandbox: importing {args[0]} is not allowed")
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


def run_python(
    code: str,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    max_output_chars: int = 4000,
    max_processes: int = 64,
    max_file_mb: int = 16,
    drop_privileges: bool = True,
) -> SandboxResult:
    """Run ``code`` in a fresh sandboxed Python subprocess and collect its output.

    ``timeout_s`` is the wall-clock limit (the CPU limit is one second more); ``memory_mb`` the
    address-space limit; ``max_processes`` the ``RLIMIT_NPROC`` of the child's user;
    ``max_file_mb`` the largest file it may write. The scratch directory (the child's cwd, its
    ``HOME`` and ``TMPDIR``) is created for this run and removed afterwards.
    """
    runner = tempfile.mkdtemp(prefix="agentq-py-")
    try:
        os.chmod(runner, 0o711)
        scratch = os.path.join(runner, "scratch")
        os.mkdir(scratch, 0o700)
        code_path = os.path.join(runner, "code.py")
        boot_path = os.path.join(runner, "bootstrap.py")
        out_path = os.path.join(runner, "output.txt")
        with open(code_path, "w", encoding="utf-8") as f:
            f.write(code)
        with open(boot_path, "w", encoding="utf-8") as f:
            f.write(f"MEMORY_MB = {int(memory_mb)}\n" + _BOOTSTRAP)
        ids = _nobody() if drop_privileges else None
        if ids is not None:
            os.chown(scratch, ids[0], ids[1])
        cfg = {
            "scratch": scratch,
            "code": code_path,
            "memory": int(memory_mb) * 1024 * 1024,
            "cpu_s": int(timeout_s) + 1,
            "fsize": int(max_file_mb) * 1024 * 1024,
            "nproc": int(max_processes),
            "uid": ids[0] if ids else None,
            "gid": ids[1] if ids else None,
        }
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": scratch,
            "TMPDIR": scratch,
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        timed_out = False
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-X", "utf8", boot_path, json.dumps(cfg)],
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        with open(out_path, "rb") as f:
            raw = f.read(max_output_chars * 4 + 4)
            size = os.fstat(f.fileno()).st_size
        text = raw.decode("utf-8", errors="replace")
        truncated = len(text) > max_output_chars or size > len(raw)
        if truncated:
            text = (
                text[:max_output_chars]
                + f"\n... [output truncated to {max_output_chars} characters]"
            )
        error = None
        code_ = proc.returncode
        if timed_out:
            error = (
                f"execution timed out after {timeout_s:g} s (time limit); the program was stopped"
            )
        elif code_ is not None and code_ < 0:
            sig = -code_
            name = (
                signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            )
            why = {
                "SIGXCPU": "the CPU time limit",
                "SIGKILL": "a resource limit (memory or time)",
                "SIGSEGV": "a crash (possibly the memory limit)",
                "SIGABRT": "an abort (possibly the memory limit)",
                "SIGXFSZ": "the file size limit",
            }.get(name, "a signal")
            error = f"the program was killed by {name} ({why})"
        return SandboxResult(text, code_, timed_out=timed_out, truncated=truncated, error=error)
    finally:
        shutil.rmtree(runner, ignore_errors=True)


__all__ = ["SandboxResult", "run_python"]
