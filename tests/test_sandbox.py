"""Attack regression suite for the python tool's sandbox (``agentq.envs.tooluse.sandbox``).

Each attack runs twice under bubblewrap: with the audit hook (the sandbox as shipped) and
without it (``audit_hook=False``: the OS boundary alone must hold, since the hook can be
bypassed from Python). "Held" means the attack's effect did not happen: no file outside the
scratch directory, no process left, no root, no device write, no parent secret, no signal.
The in-process mode keeps its own smaller set.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from agentq.envs.tooluse import sandbox
from agentq.envs.tooluse.sandbox import (
    SandboxUnavailableError,
    check_isolation,
    run_python,
    seccomp_filter,
)
from agentq.envs.tooluse.tools import PythonInterpreter

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

LAYERS = [pytest.param(True, id="hook+os"), pytest.param(False, id="os-only")]


def run(code: str, hook: bool = True, **kw: object) -> str:
    kw.setdefault("timeout_s", 10)
    return run_python(textwrap.dedent(code), audit_hook=hook, **kw).observation  # type: ignore[arg-type]


@pytest.fixture
def host_target() -> object:
    """A path the sandbox can see (the read-only Python prefix) that must never appear."""
    p = Path(sys.prefix) / f"agentq-escape-{uuid.uuid4().hex}"
    yield p
    if p.exists():  # only when an attack succeeded: clean up, the test has failed already
        p.unlink()


# -- the boundary itself ---------------------------------------------------------------------
def test_ordinary_programs_work() -> None:
    out = run(
        """
        import json, os, tempfile, decimal, fractions
        os.makedirs('a/b')
        with open('a/b/f.txt', 'w') as f:
            f.write('hi')
        with tempfile.NamedTemporaryFile('w') as t:
            t.write('x')
        print(open('a/b/f.txt').read(), os.getcwd(), sum(range(10)))
        """
    )
    assert out.strip() == "hi /scratch 45"


@pytest.mark.parametrize("hook", LAYERS)
def test_not_root_no_capabilities(hook: bool) -> None:
    out = run(
        """
        import os
        caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
        print(os.getuid(), os.geteuid(), int(caps, 16))
        try:
            os.setuid(0)
        except OSError as e:
            print('setuid', type(e).__name__)
        """,
        hook,
    )
    uid, euid, caps = out.split()[:3]
    assert int(uid) != 0 and int(euid) != 0 and caps == "0"
    assert "setuid PermissionError" in out


TESTS_DIR = Path(__file__).resolve().parent
"""This checkout's tests: outside the interpreter's paths, so never visible in the sandbox."""


@pytest.mark.parametrize("hook", LAYERS)
def test_root_filesystem_is_read_only_and_minimal(hook: bool, host_target: Path) -> None:
    out = run(
        f"""
        import os
        for p in ('/etc/shadow', '/etc/passwd', '/root/.ssh', '/home', {str(TESTS_DIR)!r}):
            print(p, os.path.exists(p))
        for p in ({str(host_target)!r}, '/usr/agentq-x', '/sandbox/x'):
            try:
                open(p, 'w').write('x')
                print('WROTE', p)
            except OSError as e:
                print('refused', type(e).__name__)
        """,
        hook,
    )
    assert "True" not in out and "WROTE" not in out
    assert out.count("refused") == 3
    assert not host_target.exists()


@pytest.mark.parametrize("hook", LAYERS)
def test_no_network(hook: bool) -> None:
    out = run(
        """
        import socket
        for addr in (('127.0.0.1', 22), ('1.1.1.1', 53)):
            try:
                socket.create_connection(addr, timeout=2)
                print('CONNECTED')
            except OSError as e:
                print('refused', type(e).__name__)
        print(sorted(i[1] for i in socket.if_nameindex()) if hasattr(socket, 'if_nameindex') else '')
        """,
        hook,
    )
    assert "CONNECTED" not in out and "refused" in out
    if not hook:
        assert "['lo']" in out  # a fresh network namespace: loopback only


# -- the attack classes of issue 13 ------------------------------------------------------------
@pytest.mark.parametrize("hook", LAYERS)
def test_escape_by_alias_posixsubprocess(hook: bool, host_target: Path) -> None:
    """Load _posixsubprocess under another name and fork_exec a shell."""
    out = run(
        f"""
        import importlib.util, os, glob, sys
        so = [p for p in glob.glob(sys.base_prefix + '/lib/python3*/lib-dynload/_posixsubprocess*')]
        if so:
            spec = importlib.util.spec_from_file_location('innocent._posixsubprocess', so[0])
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            import _posixsubprocess as mod  # built in
        r, w = os.pipe()
        ep_r, ep_w = os.pipe()
        args = [b'/bin/sh', b'-c', b'id -u; echo x > {host_target}']
        pid = mod.fork_exec(args, [b'/bin/sh'], True, (), None, None, -1, -1, -1, w, -1, w,
                            ep_r, ep_w, False, False, -1, None, None, None, -1, None, False)
        os.waitpid(pid, 0)
        os.close(w)
        print('child said', os.read(r, 1000).decode())
        """,
        hook,
    )
    assert not host_target.exists()
    if hook:
        assert "importing _posixsubprocess is not allowed" in out
    else:  # the shell ran, but as the sandbox user, on a read-only file system
        assert "child said" in out and "child said 0\n" not in out
        assert "Read-only file system" in out


@pytest.mark.parametrize("hook", LAYERS)
def test_memory_write_with_ctypes(hook: bool, host_target: Path) -> None:
    """ctypes.from_address rewrote the hook's state on main; then os.system ran."""
    out = run(
        f"""
        import ctypes, os
        x = ('os.system',)
        ctypes.c_ssize_t.from_address(id(x))  # a raw memory handle
        os.system('id -u > /dev/stderr; echo x > {host_target}')
        """,
        hook,
    )
    assert not host_target.exists()
    if hook:
        assert "raw memory access" in out


@pytest.mark.parametrize("hook", LAYERS)
def test_path_tricks_str_and_bytes_subclasses(hook: bool, host_target: Path) -> None:
    out = run(
        f"""
        class P(str):
            def split(self, *a):
                return ['scratch', 'x']
            def __fspath__(self):
                return self
        class B(bytes):
            def decode(self, *a, **k):
                return '/scratch/x'
        for p in (P({str(host_target)!r}), B({str(host_target).encode()!r})):
            try:
                open(p, 'w').write('x')
                print('WROTE')
            except OSError as e:
                print('refused', type(e).__name__, e)
        """,
        hook,
    )
    assert "WROTE" not in out and not host_target.exists()
    if hook:
        assert out.count("writing outside the working directory") == 2


@pytest.mark.parametrize("hook", LAYERS)
def test_directory_swap_race(hook: bool, host_target: Path) -> None:
    """A thread flips scratch/d between a directory and a symlink out while the main thread
    opens d/<name> for writing: the check-then-open race of an in-process guard."""
    out = run(
        f"""
        import os, threading, time
        os.mkdir('real')
        stop = False
        def flip():
            while not stop:
                try:
                    os.symlink('real', 'tmp_d'); os.replace('tmp_d', 'd')
                    os.symlink({str(host_target.parent)!r}, 'tmp_d'); os.replace('tmp_d', 'd')
                except OSError:
                    pass
        t = threading.Thread(target=flip); t.start()
        wrote = refused = 0
        end = time.time() + 1.0
        while time.time() < end:
            try:
                with open('d/{host_target.name}', 'w') as f:
                    f.write('x')
                wrote += 1
            except OSError:
                refused += 1
        stop = True; t.join()
        print('done', wrote, refused)
        """,
        hook,
    )
    assert "done" in out
    assert not host_target.exists()


@pytest.mark.parametrize("hook", LAYERS)
def test_device_nodes(hook: bool) -> None:
    out = run(
        """
        import os, stat
        for kind, dev in ((stat.S_IFBLK, os.makedev(8, 0)), (stat.S_IFCHR, os.makedev(1, 1))):
            try:
                os.mknod('node', kind | 0o600, dev)
                print('MADE')
            except OSError as e:
                print('refused', type(e).__name__)
        print(sorted(os.listdir('/dev')))
        for p in ('/dev/mem', '/dev/kmem', '/dev/sda', '/dev/vda', '/dev/port'):
            try:
                open(p, 'rb').read(1)
                print('READ', p)
            except OSError:
                pass
        """,
        hook,
    )
    assert "MADE" not in out and "READ" not in out
    assert out.count("refused") == 2


@pytest.mark.parametrize("hook", LAYERS)
def test_parent_proc_is_not_visible(hook: bool) -> None:
    me = os.getpid()
    out = run(
        f"""
        import os
        pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
        print('pids', pids, 'ppid', os.getppid())
        for p in ('/proc/{me}/environ', '/proc/{me}/mem', '/proc/1/environ', '/proc/1/mem'):
            try:
                open(p, 'rb').read(16)
                print('READ', p)
            except OSError as e:
                print('refused', type(e).__name__)
        """,
        hook,
    )
    assert "READ" not in out and out.count("refused") == 4
    pids = eval(out.split("pids ")[1].split(" ppid")[0])
    assert me not in pids and max(pids) < 10  # its own PID namespace


@pytest.mark.parametrize("hook", LAYERS)
def test_signals_cannot_reach_the_parent(hook: bool) -> None:
    me = os.getpid()
    out = run(
        f"""
        import os, signal
        for how in ('kill', 'pidfd'):
            try:
                if how == 'kill':
                    os.kill({me}, signal.SIGKILL)
                else:
                    fd = os.pidfd_open({me})
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                print('SENT', how)
            except OSError as e:
                print('refused', how, type(e).__name__)
        """,
        hook,
    )
    assert "SENT" not in out and out.count("refused") == 2  # and we are still alive


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{p}/cmdline").read_bytes():
                    found.append(int(p))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("hook", LAYERS)
def test_setsid_grandchild_dies_at_the_time_limit(hook: bool) -> None:
    marker = f"{uuid.uuid4().int % 10**6}.123"
    r = run_python(
        textwrap.dedent(
            f"""
            import os, time
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv('/bin/sleep', ['sleep', '{marker}'])
                os._exit(0)
            time.sleep(60)
            """
        ),
        timeout_s=1.5,
        audit_hook=hook,
    )
    leftover = _host_processes_with(marker)
    for pid in leftover:  # never leave one behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert leftover == []
    if hook:
        assert "starting processes (fork) is not allowed" in r.output
    else:
        assert r.timed_out


@pytest.mark.parametrize("hook", LAYERS)
def test_disk_fill_stops_at_the_quota(hook: bool) -> None:
    out = run(
        """
        import os
        total = 0
        try:
            for i in range(100):
                with open(f'f{i}', 'wb') as f:
                    for _ in range(15):
                        f.write(b'x' * 1024 * 1024)
                        total += 1
        except OSError as e:
            print('stopped', type(e).__name__, e.errno)
        print('MB', total)
        """,
        hook,
        max_disk_mb=32,
    )
    assert "stopped" in out
    assert int(out.split("MB ")[1].split()[0]) <= 32


@pytest.mark.parametrize("hook", LAYERS)
def test_fork_bomb_is_bounded(hook: bool) -> None:
    out = run(
        """
        import os, time
        kids = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                kids += 1
        except OSError as e:
            print('stopped', type(e).__name__, e)
        print('kids', kids)
        """,
        hook,
        max_processes=8,
        timeout_s=5,
    )
    if hook:
        assert "starting processes (fork) is not allowed" in out
    else:
        assert "stopped BlockingIOError" in out and int(out.split("kids ")[1].split()[0]) < 8


def test_seccomp_refuses_new_namespaces() -> None:
    if seccomp_filter() is None:
        pytest.skip("seccomp filter is x86-64 only")
    out = run(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for name, flag in (('user', 0x10000000), ('mount', 0x00020000)):
            rc = libc.unshare(flag)
            print(name, rc, os.strerror(ctypes.get_errno()))
        print('ptrace', libc.ptrace(16, 1, 0, 0), os.strerror(ctypes.get_errno()))
        """,
        hook=False,
    )
    assert "user -1 Operation not permitted" in out
    assert "mount -1 Operation not permitted" in out
    assert "ptrace -1 Operation not permitted" in out


def test_limits_time_memory_output() -> None:
    r = run_python("while True:\n    pass", timeout_s=1)
    assert r.timed_out and "timed out after 1 s" in r.observation
    out = run("x = bytearray(10 * 1024 ** 3)\nprint(len(x))", memory_mb=512)
    assert "MemoryError" in out and "512 MB" in out
    out = run("for i in range(100000):\n    print('line', i)", max_output_chars=300)
    assert "[output truncated to 300 characters]" in out


# -- refusing to run without the boundary -----------------------------------------------------
def test_missing_bubblewrap_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_PROBED", {})
    with pytest.raises(SandboxUnavailableError, match="needs bubblewrap") as e:
        PythonInterpreter()
    assert "\n" not in str(e.value) and "isolation='process'" in str(e.value)
    with pytest.raises(SandboxUnavailableError):
        run_python("print(1)")
    # the weaker mode works when asked for by name
    assert PythonInterpreter(isolation="process").run({"code": "print(2)"}).strip() == "2"


def test_unknown_isolation_is_refused() -> None:
    from agentq.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown sandbox isolation"):
        check_isolation("docker")
    with pytest.raises(ValueError):
        run_python("print(1)", isolation="process", audit_hook=False)


def test_env_refuses_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentq.envs.tooluse import ToolUseEnv

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_PROBED", {})
    with pytest.raises(SandboxUnavailableError):
        ToolUseEnv()
    env = ToolUseEnv(python_isolation="process")
    assert env.tools["python_interpreter"].isolation == "process"  # type: ignore[attr-defined]


# -- the in-process mode (opt-in, weaker): the hook alone ---------------------------------------
def test_process_mode_hook(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    py = PythonInterpreter(timeout_s=10, isolation="process")
    assert "writing outside the working directory" in py.run(
        {"code": f"open({str(target)!r}, 'w').write('x')"}
    )
    assert "writing outside the working directory" in py.run(
        {
            "code": f"class P(str):\n    def split(self, *a): return ['tmp']\nopen(P({str(target)!r}), 'w')"
        }
    )
    assert "network access is not allowed" in py.run(
        {"code": "import socket\nsocket.socket().connect(('127.0.0.1', 80))"}
    )
    assert "starting processes (fork) is not allowed" in py.run(
        {"code": "import os\nwhile True:\n    os.fork()"}
    )
    assert "raw memory access" in py.run({"code": "import ctypes\nctypes.c_int.from_address(8)"})
    assert "not allowed" in py.run({"code": "import subprocess\nsubprocess.run(['true'])"})
    assert not target.exists()


def test_python_installation_under_tmp_keeps_tmp_as_its_way(monkeypatch):
    """A checkout whose .venv lives under /tmp (CI clones there) must still get a sandbox: /tmp
    is then the read-only way to the interpreter, not a symlink to the scratch directory."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    monkeypatch.setattr(sandbox, "python_roots", lambda: ["/tmp/ci/.venv"])
    argv = sandbox.bwrap_argv("/r", privileged=True, max_disk_mb=8, seccomp_fd=None)
    assert "--symlink" not in argv[argv.index("--tmpfs") :]  # (/bin etc. may be symlinks before)
    assert argv[argv.index("--chdir") + 1] == sandbox.SCRATCH
    assert argv[argv.index("/tmp/ci/.venv") - 1] == "--ro-bind"
    monkeypatch.setattr(sandbox, "python_roots", lambda: ["/opt/python"])
    argv = sandbox.bwrap_argv("/r", privileged=True, max_disk_mb=8, seccomp_fd=None)
    i = argv.index("--symlink", argv.index("--tmpfs"))
    assert argv[i + 1 : i + 3] == [sandbox.SCRATCH, "/tmp"]
