"""Start NVIDIA Triton Inference Server on a model repository and wait until it serves.

``tritonserver`` comes from PATH (inside NVIDIA's container) or, failing that, from the
``nvidia-pytriton`` wheel (the serve extra), whose bundled server runs python-backend models on
a CPU-only machine once it is given a backend folder with the python backend and the stub for
this interpreter, its shared libraries, and this environment's ``python3`` first on PATH.
"""

from __future__ import annotations

import collections
import errno
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from gantool.artifacts import REPOSITORY
from gantool.errors import GantoolError, OptionError, literal
from gantool.system import die_with_parent

# The python backend hands tensors to its stubs through a shared-memory region that starts at
# 1 MB and grows by 1 MB by default: a 1024 px batch (3 MB an image) then grows it in dozens of
# steps. Sized for megapixel batches, render through shared memory ran 0.75x -> 0.90x of
# in-process ONNX Runtime (benchmarks/serving.py --transport, 1024 px). The deployment files in
# deploy/ pass the same flags.
PYTHON_BACKEND_ARGS = ("--backend-config=python,shm-default-byte-size=8388608",
                       "--backend-config=python,shm-growth-byte-size=67108864")

# What Triton says on a machine without a GPU, where nothing needs one: not worth a user's eye.
CPU_HOST_NOISE = ("CUDA driver version is insufficient", "CudaDriverHelper has not been "
                  "initialized", "pinned memory", "unable to create stream for")


def is_noise(line: str) -> bool:
    return any(text in line for text in CPU_HOST_NOISE)


class TritonServer:
    """``with TritonServer(repo, http_port=8000, grpc_port=8001) as server: ...``

    ``start`` returns once every model is READY, or raises GantoolError naming the model that
    failed to load and Triton's reason (the server is stopped then). ``log`` (a callable) gets
    every line Triton prints; the last lines are kept for error messages.
    """

    def __init__(self, repository: Path, http_port: int = 8000, grpc_port: int = 8001,
                 host: str = "127.0.0.1", metrics_port: int | None = None, log=None,
                 timeout: float = 120.0, extra_args: tuple[str, ...] = ()):
        self.repository = Path(repository).resolve()
        self.host, self.http_port, self.grpc_port = host, http_port, grpc_port
        self.metrics_port, self.timeout, self.extra_args = metrics_port, timeout, extra_args
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.process: subprocess.Popen | None = None
        self._backends: tempfile.TemporaryDirectory | None = None
        self._link: tempfile.TemporaryDirectory | None = None
        self._reader: threading.Thread | None = None
        self._shm_before: set[str] = set()

    @property
    def http_url(self) -> str:
        return f"{self._url_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._url_host}:{self.grpc_port}"

    @property
    def _url_host(self) -> str:
        """An IPv6 address in brackets, as URLs write it ([::1]:8001)."""
        return f"[{self.host}]" if ":" in self.host else self.host

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """``check``, then ``launch``."""
        self.check()
        self.launch()

    def check(self) -> None:
        """One-line errors before anything starts: not a repository, a port in use (naming
        the options, ``http_port`` and the others, as ``{name}``: ``OptionError``)."""
        if not (self.repository / "render" / "config.pbtxt").is_file():
            raise OptionError(None, f"{literal(self.repository)} is not a gantool model "
                              "repository (no render/config.pbtxt); write one with gantool "
                              "export {formats} triton")
        ports = [("http_port", self.http_port), ("grpc_port", self.grpc_port)]
        if self.metrics_port is not None:
            ports.append(("metrics_port", self.metrics_port))
        for i, (option, port) in enumerate(ports):
            same = [o for o, p in ports[:i] if p == port]
            if same:
                raise OptionError(None, f"{{{same[0]}}} and {{{option}}} are both {port}; "
                                  "give each its own port")
            _check_port_free(self.host, port, option)

    def launch(self) -> None:
        """Run tritonserver and wait until every model is ready (``start`` checks first)."""
        binary, env, backend_args = self._locate()
        # Triton joins address and port with a ':': gRPC takes an IPv6 address in brackets,
        # the HTTP servers (libevhtp) as "ipv6:ADDRESS"
        v6 = ":" in self.host
        http_address = f"ipv6:{self.host}" if v6 else self.host
        cmd = [binary, "--model-repository", self._plain_repository(),
               "--http-address", http_address, "--http-port", str(self.http_port),
               "--grpc-address", self._url_host, "--grpc-port", str(self.grpc_port),
               "--exit-on-error=false", "--exit-timeout-secs=10", *backend_args,
               *PYTHON_BACKEND_ARGS]
        if self.metrics_port is None:
            cmd.append("--allow-metrics=false")
        else:
            cmd += ["--metrics-address", http_address, "--metrics-port", str(self.metrics_port)]
        cmd += list(self.extra_args)
        # Linux ties the death signal to the starting *thread*: only the main thread's lifetime
        # is the process's.
        main = threading.current_thread() is threading.main_thread()
        self._shm_before = _backend_regions()
        # Its own process group: the python-backend stubs it forks are stopped with it, even
        # when tritonserver itself was killed (-9) and they were left to init.
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1,
                                        preexec_fn=_die_with_parent if main else None,
                                        process_group=0)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int | None:
        """Graceful shutdown (SIGINT, as Ctrl-C would), then SIGKILL after 20 s."""
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
            _kill_group(process.pid)  # python-backend stubs left behind, if any
            new = _backend_regions() - self._shm_before
            for region in new - _mapped_regions() if new else ():  # scan /proc only if needed
                (SHM / region).unlink(missing_ok=True)  # what a killed server left in /dev/shm
            if self._reader is not None:
                self._reader.join(5)
        for held in (self._backends, self._link):
            if held is not None:
                held.cleanup()
        self._backends = self._link = None
        return code

    def models(self) -> list[dict]:
        """Triton's repository index: name, version, state and reason per model."""
        request = urllib.request.Request(f"http://{self.http_url}/v2/repository/index",
                                         data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready",
                                        timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        expected = {p.name for p in self.repository.iterdir() if (p / "config.pbtxt").is_file()}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GantoolError(f"tritonserver exited with code {self.process.returncode}: "
                                   f"{self.last_error()}")
            try:
                index = {m["name"]: m for m in self.models()}
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(0.2)
                continue
            failed = [m for m in index.values() if m.get("state") == "UNAVAILABLE"]
            if failed:
                m = failed[0]
                raise GantoolError(f"Triton could not load model {m['name']!r}: "
                                   f"{_one_line(m.get('reason') or self.last_error())}")
            if expected <= {n for n, m in index.items() if m.get("state") == "READY"} \
                    and self.ready():
                return
            time.sleep(0.2)
        raise GantoolError(f"Triton was not ready after {self.timeout:g} s: {self.last_error()}")

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if self.log is not None:
                self.log(line)

    def exit_reason(self, code: int) -> str:
        """Why the server stopped, in words: a signal by name, else its last error line."""
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}"
        return f"exit code {code}: {self.last_error()}"

    def last_error(self) -> str:
        lines = [ln for ln in self.tail if not is_noise(ln)]
        errors = [ln for ln in lines if ln.startswith("E") or "error" in ln.lower()]
        return (errors or lines or ["(no output)"])[-1].strip()

    def _plain_repository(self) -> str:
        """The repository's path as Triton can take it: one with a space or a non-ASCII letter
        (which Triton's argument parsing and the python backend break on) is handed over as a
        link from a plain temporary path."""
        path = str(self.repository.resolve())
        if path.isascii() and " " not in path:
            return path
        self._link = tempfile.TemporaryDirectory(prefix="gantool-triton-repo-")
        link = Path(self._link.name) / REPOSITORY
        link.symlink_to(path, target_is_directory=True)
        return str(link)

    def _locate(self) -> tuple[str, dict, list[str]]:
        """(tritonserver binary, environment, backend arguments)."""
        env = dict(os.environ)
        found = shutil.which("tritonserver")
        if found:
            return found, env, []
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise GantoolError("no tritonserver found: pip install 'gantool[serve]' (a CPU "
                               "Triton with the python backend), or run inside NVIDIA's Triton "
                               "container")
        root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise GantoolError(f"nvidia-pytriton has no python backend stub for Python {version}")
        self._backends = tempfile.TemporaryDirectory(prefix="gantool-triton-backends-")
        python = Path(self._backends.name) / "python"
        python.mkdir()
        for item in [*(root / "backends" / "python").iterdir(), stub]:
            if item.is_file():
                (python / item.name).symlink_to(item)
        libs = root.parent.parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return str(root / "bin" / "tritonserver"), env, [
            "--backend-directory", self._backends.name]


def _one_line(reason: str) -> str:
    """Triton's reason for a python-backend model that failed, without the stack it drags in
    (``...Error: message\\n\\nAt:\\n  file(line): function`` per frame, innermost first): the
    message and the outermost frame, which is the model's own code."""
    message, _, stack = reason.partition("\n\nAt:\n")
    frames = [f.strip() for f in stack.splitlines() if f.strip()]
    message = " ".join(message.split())
    return f"{message} (at {frames[-1]})" if frames else message


def _check_port_free(host: str, port: int, option: str) -> None:
    """A one-line error when ``host`` cannot listen on ``port``, the value of ``option``."""
    if not 0 < port < 65536:
        raise OptionError(None, f"{{{option}}} {port} is not a port number (1-65535)")
    try:  # the address family of the host: IPv4, IPv6 (::1) or a name
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise OptionError("host", f"{host} is not an address of this machine ({e})") from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is free
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OptionError(None, f"port {port} on {literal(host)} is in use; pick "
                                  f"another with {{{option}}}") from None
            raise GantoolError(f"cannot listen on {host} port {port}: {e.strerror}") from None


SHM = Path("/dev/shm")
_REGION_PREFIX = "triton_python_backend_shm_region_"


def _backend_regions() -> set[str]:
    """The python backend's shared-memory regions now in /dev/shm."""
    try:
        return {p.name for p in SHM.glob(f"{_REGION_PREFIX}*")}
    except OSError:
        return set()


def _mapped_regions() -> set[str]:
    """Those regions some live process still maps (another server's: not ours to remove)."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:
            continue
        mapped.update(line.rsplit("/", 1)[-1].removesuffix(" (deleted)")
                      for line in text.splitlines() if _REGION_PREFIX in line)
    return mapped


def _kill_group(pgid: int, wait: float = 5.0) -> None:
    """SIGKILL every process left in a process group and wait until they are gone."""
    deadline = time.monotonic() + wait
    try:
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)  # raises once the group is empty
            time.sleep(0.05)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:
    """The server gets SIGTERM if the process that started it dies (even by SIGKILL)."""
    die_with_parent(signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (for tests and benchmarks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
