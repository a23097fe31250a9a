"""The Triton backend: the Generator protocol over a running Triton server's ``render`` ensemble
(``gantool serve``), opened by ``gantool.backends.open_source`` (or ``open_triton``) as the
other backends are by ``open_backend``.

``TritonGenerator.generate(seeds, truncation)`` splits the seeds into requests of
``request_batch`` seeds and keeps ``concurrency`` of them in flight (one client per thread:
tritonclient's HTTP client is not thread-safe). ``generate_into`` does the same into an array
that lies in a render's shared-memory slot (``sampling/writer.py``): with a server on this
host, Triton's system shared memory then carries the images, the server writing each request's
images straight into the slot the encoders read, so no image crosses gRPC/HTTP or is copied by
the client. A server on another host cannot open the region; ``shared_memory="auto"`` finds
that out once, at the start, and uses the wire. Transient failures (server unreachable,
overloaded, timed out) are retried with exponential backoff for up to ``retry_for`` seconds
(60 by default: a server restart fits); a request the server refuses (or one still failing
after that) fails only its seed range: ``generate`` then raises
``PartialBatch`` carrying the images that did arrive, so a render writes them and carries on.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gantool.backends.base import check_class_input, class_input
from gantool.errors import GantoolError, OptionError, PartialBatch
from gantool.latent import batched, plain_truncation, truncation_input
from gantool.model_info import graph_inputs

PROTOCOLS = ("grpc", "http")
# gRPC status names / HTTP codes worth another try: the server is down, busy or slow.
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "502", "503",
             "504", "429")
# Messages of a server that is (re)loading: the model was ready when the render began.
RELOADING = ("unavailable", "no available versions", "is not ready", "failed to connect")
# tritonclient's own message limits (images are large), plus a subchannel pool per client: a
# reconnecting client then dials afresh instead of waiting out gRPC's shared reconnect backoff.
_GRPC_ARGS = [("grpc.max_send_message_length", 2**31 - 1),
              ("grpc.max_receive_message_length", 2**31 - 1),
              ("grpc.use_local_subchannel_pool", 1)]
SHARED_MEMORY = ("auto", "on", "off")
RETRY_FOR = 60.0  # seconds a request keeps retrying transient failures: a server restart fits
MAX_BACKOFF = 4.0  # seconds between two tries at most


def client_module(protocol: str):
    if protocol not in PROTOCOLS:
        raise GantoolError(f"unknown protocol {protocol!r}; choose grpc or http")
    try:
        if protocol == "grpc":
            # grpcio >= 1.80 (grpc/grpc#43055) aborts a few percent of the children forked
            # while its channels are busy (the writer's workers, a relaunched tritonserver):
            # none of gantool's children use the parent's gRPC, so its fork support is off.
            os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise GantoolError("rendering through Triton needs the serve extra: pip install "
                           "'gantool[serve]'") from None
    return module


class TritonGenerator:
    """The Generator protocol over a Triton server's ``render`` ensemble."""

    def __init__(self, url: str, protocol: str = "grpc", model: str = "render",
                 request_batch: int = 8, concurrency: int = 4, timeout: float = 60.0,
                 retry_for: float = RETRY_FOR, retries: int | None = None,
                 backoff: float = 0.5, shared_memory: str = "auto"):
        if shared_memory not in SHARED_MEMORY:
            raise GantoolError(f"unknown shared-memory mode {shared_memory!r}; choose "
                               f"{', '.join(SHARED_MEMORY)}")
        self.module = client_module(protocol)
        self.url, self.protocol, self.model = url, protocol, model
        self.timeout, self.retry_for, self.retries = timeout, retry_for, retries
        self.backoff = backoff
        self.concurrency = max(1, concurrency)
        self._local = threading.local()
        client = self._client()
        try:
            live = client.is_server_live()
        except Exception as e:  # noqa: BLE001 - any failure here means "cannot reach it"
            raise GantoolError(f"cannot reach Triton at {url} over {protocol}: {_reason(e)} "
                               "(is gantool serve running, and is that its "
                               f"{protocol} port?)") from None
        if not live or not client.is_model_ready(model):
            raise GantoolError(f"Triton at {url} is up but model {model!r} is not ready")
        render = self._config(client, model)
        latent = self._config(client, "latent")
        params = {k: v["string_value"] for k, v in latent.get("parameters", {}).items()}
        out = render["output"][0]
        self.resolution, _, self.channels = (int(d) for d in out["dims"])
        self.nz, self.prior = int(params["nz"]), params["prior"]
        t = params.get("default_truncation", "none")
        self.default_truncation = None if t == "none" else float(t)
        self.classes = tuple(json.loads(params.get("classes", "[]")))  # a conditional model's
        self.weights_sha256 = params.get("weights_sha256", "")  # "" from an older repository
        self.max_batch = int(render.get("max_batch_size", 0)) or request_batch
        self.request_batch = max(1, min(request_batch, self.max_batch))
        generator = int(self._config(client, "generator").get("max_batch_size", 0))
        self.z_batch = max(1, min(request_batch, generator or request_batch))
        self.pool = ThreadPoolExecutor(self.concurrency)
        self._lock = threading.Lock()
        self._registered: set[str] = set()
        self.transport = "wire"
        if shared_memory != "off":
            reason = self._probe_shared_memory(client)
            if reason is None:
                self.transport = "shared memory"
            elif shared_memory == "on":
                raise OptionError("shared_memory", f"Triton at {url} cannot use this host's "
                                  f"shared memory ({reason}); is it on another host? Ask for "
                                  "auto or off")

    @property
    def batch_size(self) -> int:
        """Seeds per ``generate`` call that keep every request slot busy."""
        return self.request_batch * self.concurrency

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for name in list(self._registered):
            try:
                self._client().unregister_system_shared_memory(name)
            except Exception:  # noqa: BLE001 - the server may be gone; its regions went too
                pass
        self._registered.clear()

    def generate(self, seeds: Sequence[int], truncation: float | None,
                 classes: Sequence[int] | None = None) -> np.ndarray:
        """uint8 images (B, H, W, C) (of ``classes``, one per seed, for a conditional model);
        raises PartialBatch if some seed ranges failed."""
        if truncation is None:  # the plain prior, as the latent model accepts it
            truncation = plain_truncation(self.prior)
        parts = self._parts(seeds, classes)
        results = list(self.pool.map(lambda p: self._infer(self._seed_inputs(p, truncation)),
                                     parts))
        ok = [(p, r) for p, r in zip(parts, results) if not isinstance(r, str)]
        failures = [(p[0][0], p[-1][0], r) for p, r in zip(parts, results) if isinstance(r, str)]
        empty = np.zeros((0, self.resolution, self.resolution, self.channels), np.uint8)
        images = np.concatenate([r for _, r in ok]) if ok else empty
        if failures:
            raise PartialBatch([s for p, _ in ok for s, _ in p], images, failures)
        return images

    def generate_into(self, seeds: Sequence[int], truncation: float | None,
                      out: np.ndarray, classes: Sequence[int] | None = None) -> None:
        """``generate`` into ``out`` (uint8 (B, H, W, C)): through shared memory, written by
        the server itself, when ``out`` lies in a render's shared-memory slot."""
        from gantool.sampling.writer import shared_region

        region = shared_region(out) if self.transport == "shared memory" else None
        if region is None:
            out[:] = self.generate(seeds, truncation, classes)
            return
        if truncation is None:
            truncation = plain_truncation(self.prior)
        name, offset, size = region
        try:
            self._register(name, size)
        except Exception:  # noqa: BLE001 - a server restarting: the requests retry, registering
            pass
        per_image = out[0].nbytes if len(out) else 0
        parts = self._parts(seeds, classes)
        starts = np.cumsum([0] + [len(p) for p in parts])
        results = list(self.pool.map(
            lambda i: self._infer(self._seed_inputs(parts[i], truncation),
                                  (name, size, offset + int(starts[i]) * per_image)),
            range(len(parts))))
        failures = [(p[0][0], p[-1][0], r) for p, r in zip(parts, results) if r is not None]
        if failures:
            ok = [i for i, r in enumerate(results) if r is None]
            images = np.concatenate([out[starts[i] : starts[i + 1]] for i in ok]) if ok else (
                out[:0].copy())
            raise PartialBatch([s for i in ok for s, _ in parts[i]], images, failures)

    def generate_z(self, z: np.ndarray, c: np.ndarray | None = None,
                   truncation: float | None = None) -> np.ndarray:
        """uint8 images (B, H, W, C) for ``z`` (B, nz) from the ``generator`` model, which the
        ``render`` ensemble feeds after its ``latent`` step; a request still failing after the
        retries is a one-line error (z has no seed ranges to report)."""
        check_class_input(self.classes, c)
        feeds = graph_inputs(z, c, truncation_input(truncation, self.prior, len(z)))
        parts = [{name: a[i : i + self.z_batch] for name, a in feeds.items()}
                 for i in range(0, len(z), self.z_batch)]
        results = list(self.pool.map(lambda p: self._infer(p, model="generator"), parts))
        for part, result in zip(parts, results):
            if isinstance(result, str):
                raise GantoolError(f"Triton at {self.url} failed {len(part['z'])} latent "
                                   f"vector(s): {result}")
        empty = np.zeros((0, self.resolution, self.resolution, self.channels), np.uint8)
        return np.concatenate(results) if results else empty

    def _parts(self, seeds: Sequence[int],
               classes: Sequence[int] | None) -> list[list[tuple[int, int]]]:
        """(seed, class) pairs in requests of ``request_batch``; the class is -1 for an
        unconditional model, seed mod K for a conditional one asked for none."""
        seeds = list(seeds)
        if self.classes:
            class_input(self.classes, seeds, classes)  # one-line errors before any request
            classes = [s % len(self.classes) for s in seeds] if classes is None else classes
        elif classes is not None:
            class_input(self.classes, seeds, classes)  # "not conditional"
        pairs = list(zip(seeds, classes if classes is not None else [-1] * len(seeds)))
        return [list(p) for p in batched(pairs, self.request_batch)]

    def _seed_inputs(self, pairs: list[tuple[int, int]],
                     truncation: float) -> dict[str, np.ndarray]:
        """The ``render`` ensemble's inputs for (seed, class) ``pairs``."""
        inputs = {"seed": np.asarray([s for s, _ in pairs], dtype=np.int64).reshape(-1, 1),
                  "truncation": np.full((len(pairs), 1), truncation, dtype=np.float32)}
        if self.classes:
            inputs["class"] = np.asarray([c for _, c in pairs], dtype=np.int32).reshape(-1, 1)
        return inputs

    def _infer(self, inputs: dict[str, np.ndarray], region: tuple[str, int, int] | None = None,
               model: str | None = None) -> np.ndarray | str | None:
        """``image`` of one request to ``model`` (the render ensemble by default), None when
        ``region`` (name, size, offset) got the images, or the reason it failed (after retries
        if transient)."""
        m = self.module
        tensors = []
        for name, array in inputs.items():
            kind = {np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}.get(array.dtype,
                                                                                "FP32")
            tensors.append(m.InferInput(name, list(array.shape), kind))
            tensors[-1].set_data_from_numpy(array)
        output = m.InferRequestedOutput("image")
        if region is not None:
            n = len(next(iter(inputs.values())))
            nbytes = n * self.resolution**2 * self.channels
            output.set_shared_memory(region[0], nbytes, region[2])
        first_failure, attempt = None, 0
        while True:
            try:
                result = self._client().infer(model or self.model, tensors, outputs=[output],
                                              **self._timeout_arg())
                return None if region is not None else result.as_numpy("image")
            except Exception as e:  # noqa: BLE001 - tritonclient raises several kinds
                reason = _reason(e)
                lost = region is not None and "shared memory" in reason.lower()
                first_failure = first_failure or time.monotonic()
                spent = (time.monotonic() - first_failure >= self.retry_for
                         or (self.retries is not None and attempt >= self.retries))
                if spent or not (lost or _transient(e, reason)):
                    return reason
                time.sleep(min(self.backoff * 2**attempt, MAX_BACKOFF))
                attempt += 1
                self._local.client = None  # reconnect: the old channel may be broken
                if lost:  # a restarted server forgot the region: register it again
                    try:
                        self._register(region[0], region[1], again=True)
                    except Exception:  # noqa: BLE001 - still restarting; the next try says
                        pass

    def _register(self, name: str, size: int, again: bool = False) -> None:
        with self._lock:
            if again:
                self._registered.discard(name)
                try:
                    self._client().unregister_system_shared_memory(name)
                except Exception:  # noqa: BLE001 - not registered there any more
                    pass
            if name not in self._registered:
                try:
                    self._client().register_system_shared_memory(name, "/" + name, size)
                except Exception as e:  # a timed-out call may have registered it after all
                    if "already" not in _reason(e).lower():
                        raise
                self._registered.add(name)

    def _probe_shared_memory(self, client) -> str | None:
        """None when the server maps a region of ours (it shares this host), else why not."""
        from multiprocessing import shared_memory

        probe = shared_memory.SharedMemory(create=True, size=4096)
        name = f"gantool-probe-{probe.name.lstrip('/')}"
        try:
            client.register_system_shared_memory(name, "/" + probe.name.lstrip("/"), 4096)
            client.unregister_system_shared_memory(name)
            return None
        except Exception as e:  # noqa: BLE001 - any refusal means "not on this host"
            return _reason(e)
        finally:
            probe.close()
            probe.unlink()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "http":
                client = self.module.InferenceServerClient(
                    self.url, connection_timeout=self.timeout, network_timeout=self.timeout)
            else:
                client = self.module.InferenceServerClient(self.url, channel_args=_GRPC_ARGS)
            self._local.client = client
        return client

    def _timeout_arg(self) -> dict:
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _config(self, client, name: str) -> dict:
        if self.protocol == "grpc":
            from google.protobuf import json_format

            message = client.get_model_config(name).config
            return json_format.MessageToDict(message, preserving_proto_field_name=True)
        return client.get_model_config(name)


def _reason(e: Exception) -> str:
    message = getattr(e, "message", None)
    text = message() if callable(message) else str(e)
    return " ".join(str(text).split()) or type(e).__name__


def _transient(e: Exception, reason: str) -> bool:
    status = getattr(e, "status", None)
    status = status() if callable(status) else status
    if status is not None and any(t in str(status) for t in TRANSIENT):
        return True
    return isinstance(e, (ConnectionError, TimeoutError, OSError)) or any(
        text in reason.lower() for text in RELOADING)
