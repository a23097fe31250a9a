"""What the explore page asks of a generator, answered with checked, bounded requests.

Every question arrives as a query string (text from a browser: nothing here is trusted) and is
checked by the rules the CLI uses (seeds, truncation for the model's prior, the model's
classes); an answer is an image's PNG bytes, which equal what ``gantool generate`` writes for
the same seed, truncation, class and backend (the same ``Encoding``), or a small JSON dict.
Drawn images are kept in a bounded cache, so a page of seeds is drawn as one batch and its
images are then fetched one by one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from gantool.errors import GantoolError, OptionError
from gantool.latent import NETWORK_TRUNCATION

MAX_GRID = 64  # seeds per page, fewer where images are large (see ``Explorer.max_images``)
MAX_WALK_SEEDS = 8
MAX_FRAMES_PER_SEED = 60
REQUEST_BYTES = 24 * 2**20  # uint8 pixels one request may draw (grid page or walk)
CACHE_BYTES = 256 * 2**20  # encoded images kept for the page to fetch


class Commands(Protocol):
    """The commands that reproduce what the page shows, as the CLI spells them
    (``gantool.cli.explore.Commands``). ``settings``: the truncation where it is not the
    model's default (None: the plain prior), the class name where there is one."""

    def image(self, seed: int, settings: dict) -> str:
        """The command that writes the image of ``seed``."""
        ...

    def walk(self, seeds: list[int], frames_per_seed: int, settings: dict) -> tuple[str, str]:
        """The commands that write a walk's frames, and its animation."""
        ...


class Explorer:
    """A generator (any backend: the ``gantool.backends.Generator`` protocol) behind the page.

    ``backend`` and ``device`` are shown on the page; ``name`` is the model's name there (never
    a path the page can choose). Methods take the page's query parameters and raise
    ``GantoolError`` with a one-line message for a bad one."""

    def __init__(self, generator, name: str, backend: str, device: str, commands: Commands):
        from gantool.sampling.images import Encoding

        self.gen, self.name, self.backend, self.device = generator, name, backend, device
        self.commands = commands
        self.encoding = Encoding()  # gantool generate's default: PNG, the fastest exact writer
        self.classes = tuple(getattr(generator, "classes", ()))
        shape = (generator.resolution, generator.resolution, generator.channels)
        self.max_images = int(max(2, min(MAX_GRID, REQUEST_BYTES // int(np.prod(shape)))))
        self._draw_lock = threading.Lock()  # one forward pass at a time: backends share state
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cached_bytes = 0

    # ---- the page's questions ------------------------------------------------------------
    def info(self) -> dict:
        g = self.gen
        return {"name": self.name, "resolution": g.resolution, "channels": g.channels,
                "nz": g.nz, "prior": g.prior, "default_truncation": g.default_truncation,
                # psi above 1 moves away from the average image: rarely wanted
                "truncation_max": 1.0 if g.prior in ("uniform", *NETWORK_TRUNCATION) else 3.0,
                "classes": list(self.classes), "backend": self.backend, "device": self.device,
                "max_grid": self.max_images, "max_walk_seeds": MAX_WALK_SEEDS,
                "max_frames_per_seed": MAX_FRAMES_PER_SEED}

    def grid(self, query: Mapping[str, str]) -> dict:
        """Draw seeds ``start`` .. ``start + count - 1`` (one batch) into the cache; their
        images are then ``image`` with each seed."""
        from gantool.latent import max_seed

        top = max_seed(self.gen.prior)
        start = _int(query, "start", 0, top)
        count = _int(query, "count", 1, self.max_images)
        if start + count - 1 > top:
            raise GantoolError(f"seeds end at {top}; start at most {top - count + 1}")
        t, klass = self._truncation(query), self._class(query)
        seeds = list(range(start, start + count))
        timing = self._fill([("image", s, t, klass) for s in seeds],
                            lambda todo: self._draw_seeds([k[1] for k in todo], t, klass))
        settings = self._settings(t, klass)
        return {"seeds": seeds, "truncation": t, "class": klass, **timing,
                "commands": {str(s): self.commands.image(s, settings) for s in seeds}}

    def image(self, query: Mapping[str, str]) -> bytes:
        """The PNG of one seed: gantool generate's bytes for it."""
        from gantool.latent import max_seed

        seed = _int(query, "seed", 0, max_seed(self.gen.prior))
        t, klass = self._truncation(query), self._class(query)
        key = ("image", seed, t, klass)
        self._fill([key], lambda todo: self._draw_seeds([seed], t, klass))
        return self._cached(key)

    def walk(self, query: Mapping[str, str]) -> dict:
        """Draw every frame of a looping walk through ``seeds`` into the cache (``frame``
        fetches each): the frames ``gantool video --frames-dir`` writes for it."""
        seeds, per_seed, walk = self._walk(query)
        klass = self._class(query)
        keys = [("frame", tuple(seeds), per_seed, walk.truncation, klass, i)
                for i in range(walk.frames)]
        timing = self._fill(keys, lambda todo: self._draw_frames(walk, [k[-1] for k in todo],
                                                                 klass))
        frames, animation = self.commands.walk(seeds, per_seed,
                                               self._settings(walk.truncation, klass))
        return {"seeds": seeds, "frames_per_seed": per_seed, "frames": walk.frames,
                "truncation": walk.truncation, "class": klass, **timing,
                "command": frames, "animation": animation}

    def frame(self, query: Mapping[str, str]) -> bytes:
        """The PNG of one frame of a walk."""
        seeds, per_seed, walk = self._walk(query)
        klass = self._class(query)
        index = _int(query, "frame", 0, walk.frames - 1)
        key = ("frame", tuple(seeds), per_seed, walk.truncation, klass, index)
        self._fill([key], lambda todo: self._draw_frames(walk, [index], klass))
        return self._cached(key)

    # ---- checks --------------------------------------------------------------------------
    def _truncation(self, query: Mapping[str, str]) -> float | None:
        """Absent: the model's default; ``none``: the plain prior; else a number the model's
        prior allows."""
        from gantool.latent import validate_truncation

        text = query.get("truncation", "").strip()
        if not text:
            return self.gen.default_truncation
        if text.lower() == "none":
            return None
        try:
            if not text.isascii():  # as the CLI: digits 0-9 only
                raise ValueError
            t = float(text)
            validate_truncation(t, self.gen.prior)
        except ValueError as e:
            reason = str(e) if "truncation" in str(e) else f"{text!r} is not a number"
            raise GantoolError(f"truncation: {reason}") from None
        return t

    def _class(self, query: Mapping[str, str]) -> int | None:
        """A conditional model's class index (a name or an index); None: seed mod K (what
        gantool generate draws without --class), and always for an unconditional model."""
        from gantool.backends import class_indices

        text = query.get("class", "").strip()
        if not text or text.lower() == "auto":
            return None
        picked = class_indices(self.classes, [text[:100]])
        if len(picked) != 1:
            raise OptionError("class", "choose one class")
        return picked[0]

    def _walk(self, query: Mapping[str, str]):
        from gantool.latent import max_seed
        from gantool.sampling.walk import make_walk

        items = [s.strip() for s in query.get("seeds", "").split(",") if s.strip()]
        if not 2 <= len(items) <= MAX_WALK_SEEDS:
            raise GantoolError(f"a walk goes through 2 to {MAX_WALK_SEEDS} seeds, e.g. 3,17,42; "
                               f"got {len(items)}")
        seeds = [_int({"seed": s}, "seed", 0, max_seed(self.gen.prior)) for s in items]
        per_seed = _int(query, "frames_per_seed", 1, MAX_FRAMES_PER_SEED)
        if len(seeds) * per_seed > 4 * self.max_images:
            raise GantoolError(f"a walk of {len(seeds)} seeds x {per_seed} frames is too long "
                               f"for {self.gen.resolution} px images: at most "
                               f"{4 * self.max_images} frames")
        if self.classes and self._class(query) is None:
            raise GantoolError("a walk of a conditional model draws one class: choose one")
        walk = make_walk(seeds, 1, per_seed, self.gen.nz, self.gen.prior,
                         self._truncation(query), loop=True)
        return seeds, per_seed, walk

    # ---- drawing and the cache -----------------------------------------------------------
    def _draw_seeds(self, seeds: list[int], t: float | None, klass: int | None) -> np.ndarray:
        return self.gen.generate(seeds, t, None if klass is None else [klass] * len(seeds))

    def _draw_frames(self, walk, frames: list[int], klass: int | None) -> np.ndarray:
        from gantool.backends import FixedClass
        from gantool.sampling.video import WalkFrames

        gen = self.gen if klass is None else FixedClass(self.gen, klass)
        return WalkFrames(gen, walk).generate(frames)

    def _fill(self, keys: list[tuple], draw) -> dict:
        """Draw the ``keys`` not in the cache (``draw(missing keys)`` -> their uint8 images, in
        batches within the request bound), encode and keep them; the milliseconds per image
        the model and the encoder took (None when every image was cached)."""
        with self._cache_lock:
            todo = [k for k in keys if k not in self._cache]
        if not todo:
            return {"drawn": 0, "ms_per_image": None, "encode_ms_per_image": None}
        with self._draw_lock:
            t0 = time.perf_counter()
            images = draw(todo)
            t1 = time.perf_counter()
            encoded = [self.encoding.encode(im) for im in images]
            t2 = time.perf_counter()
        with self._cache_lock:
            for key, data in zip(todo, encoded):
                self._keep(key, data)
        n = len(todo)
        return {"drawn": n, "ms_per_image": 1000 * (t1 - t0) / n,
                "encode_ms_per_image": 1000 * (t2 - t1) / n}

    def _keep(self, key: tuple, data: bytes) -> None:
        if key in self._cache:
            return
        self._cache[key] = data
        self._cached_bytes += len(data)
        while self._cached_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= len(old)

    def _cached(self, key: tuple) -> bytes:
        with self._cache_lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
        if data is None:  # evicted between drawing and fetching by a flood of other requests
            raise GantoolError("the image was dropped from the cache; ask again")
        return data

    # ---- commands ------------------------------------------------------------------------
    def _settings(self, t: float | None, klass: int | None) -> dict:
        """What a command must say besides the seeds: a truncation other than the model's
        default, a class."""
        out: dict = {}
        if t != self.gen.default_truncation:
            out["truncation"] = t
        if klass is not None:
            out["class"] = self.classes[klass]
        return out


def _int(query: Mapping[str, str], name: str, lo: int, hi: int) -> int:
    text = query.get(name, "").strip()
    try:
        if not text.isascii():  # int() reads other scripts' digits; the CLI's numbers do not
            raise ValueError
        value = int(text)
    except ValueError:
        raise GantoolError(f"{name}: {text[:40]!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise GantoolError(f"{name}: {value} is outside {lo}..{hi}")
    return value
