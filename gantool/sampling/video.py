"""Latent-walk videos: a walk's frames from any backend, encoded as a video or an animation.

``WalkFrames`` turns a walk (``walk.py``) and a backend into numbered frames (a grid of walks
tiled into each frame); ``gantool video --frames-dir`` renders them through ``render_seeds`` as
``frameNNNNNN.png`` (atomic, resumable), and ``write_video`` encodes them:

- ``.mp4``/``.mkv``/``.mov``/``.webm``: FFmpeg, the binary the ``imageio-ffmpeg`` wheel ships
  (the ``video`` extra; its Python part is BSD-2, the FFmpeg build it bundles is GPL v3, run
  as a separate program). Frames are piped to it raw, so it encodes on its own cores while the
  backend draws the next frames.
- ``.gif``/``.webp``: Pillow's animated writers, for short loops (the frames are held in memory
  until the file is written).

Each file appears whole or not at all: it is written beside the target under a temporary name
and renamed at the end.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gantool.errors import GantoolError, OptionError, did_you_mean
from gantool.fileio import UMASK, atomic_write
from gantool.latent import batched
from gantool.progress import StepProgress
from gantool.sampling.images import pil_image
from gantool.sampling.walk import Walk

FFMPEG_SUFFIXES = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9"}
ANIMATION_SUFFIXES = (".gif", ".webp")
CRF_CODECS = ("libx264", "libx265", "libvpx-vp9", "libaom-av1", "libsvtav1")
ANIMATION_MAX_BYTES = 2**30  # an animation's frames are held whole before Pillow writes them


class WalkFrames:
    """The frames of ``walk`` drawn by ``generator`` (any backend with ``generate_z``): frame
    numbers in, uint8 frames (n, rows*R, cols*R, C) out, the walk's cells tiled ``cols`` wide.
    It has the Generator protocol's ``generate`` over frame numbers, so ``render_seeds`` writes
    frames as it writes seeds."""

    def __init__(self, generator, walk: Walk, cols: int = 1):
        if walk.cells % cols:
            raise ValueError(f"{walk.cells} walks do not fill rows of {cols}")
        self.generator, self.walk = generator, walk
        self.cols, self.rows = cols, walk.cells // cols
        r, c = generator.resolution, generator.channels
        self.resolution, self.channels, self.nz = r, c, generator.nz
        self.prior, self.default_truncation = walk.prior, walk.truncation
        self.weights_sha256 = getattr(generator, "weights_sha256", "")
        self.shape = (self.rows * r, self.cols * r, c)  # (H, W, C) of a frame

    @property
    def frames(self) -> int:
        return self.walk.frames

    def generate(self, frames, truncation=None) -> np.ndarray:
        """uint8 frames (n, H, W, C); ``truncation`` is the walk's (keyframes are drawn)."""
        z = self.walk.latents(list(frames))  # (n, cells, nz)
        n, cells, r, c = len(z), self.walk.cells, self.resolution, self.channels
        images = self.generator.generate_z(  # (n*cells, r, r, c); psi where the network takes it
            z.reshape(n * cells, self.nz), truncation=self.walk.truncation)
        if cells == 1:
            return images
        tiles = images.reshape(n, self.rows, self.cols, r, r, c).transpose(0, 1, 3, 2, 4, 5)
        return np.ascontiguousarray(tiles).reshape(n, *self.shape)


def check_video_path(path: Path) -> str:
    """'ffmpeg' or 'animation' for an output file name, or a one-line error."""
    suffix = path.suffix.lower()
    if suffix in FFMPEG_SUFFIXES:
        return "ffmpeg"
    if suffix in ANIMATION_SUFFIXES:
        return "animation"
    names = ", ".join([*FFMPEG_SUFFIXES, *ANIMATION_SUFFIXES])
    raise OptionError("out", f"{path.name}: write a video ({names}), or frames to a folder",
                      see="frames_dir")


def ffmpeg_exe() -> str:
    """The FFmpeg binary of the ``video`` extra, or a one-line install hint."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise OptionError(None, "writing video needs the video extra: pip install "
                          "'gantool[video]' (without it: {out} walk.gif or .webp, or "
                          "{frames_dir})") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def check_codec(exe: str, codec: str) -> None:
    """A one-line error unless this FFmpeg build has the encoder ``codec``."""
    listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=60).stdout
    names = {line.split()[1] for line in listing.splitlines()
             if len(line.split()) > 1 and line.startswith(" V")}
    if codec not in names:
        raise OptionError("codec", f"{codec}: this FFmpeg has no such video encoder"
                          f"{did_you_mean(codec, names)}; e.g. libx264, libx265, libvpx-vp9")


class FfmpegWriter:
    """Frames (n, H, W, C) piped raw into FFmpeg, which writes ``path`` under a temporary name
    (renamed at ``close``); ``abort`` stops it and leaves nothing."""

    def __init__(self, path: Path, size: tuple[int, int, int], fps: float, codec: str | None,
                 crf: int | None, bitrate: str | None):
        exe = ffmpeg_exe()
        codec = codec or FFMPEG_SUFFIXES[path.suffix.lower()]
        check_codec(exe, codec)
        h, w, c = size
        if c not in (1, 3):
            raise GantoolError(f"video takes 1 or 3 channels, not {c}")
        self.path = path
        self.tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp{path.suffix}"
        rate = ["-b:v", bitrate] if bitrate else (
            ["-crf", str(crf)] + (["-b:v", "0"] if codec == "libvpx-vp9" else [])
            if crf is not None and codec in CRF_CODECS else [])
        even = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if h % 2 or w % 2 else []  # yuv420p
        cmd = [exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
               "-pix_fmt", "gray" if c == 1 else "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}",
               "-i", "-", "-an", "-c:v", codec, *rate, *even, "-pix_fmt", "yuv420p",
               *(["-movflags", "+faststart"] if path.suffix.lower() in (".mp4", ".mov")
                 else []), str(self.tmp)]
        self.log = tempfile.TemporaryFile()
        # Its own session: a Ctrl-C stops gantool, which then stops FFmpeg and removes the file.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True)

    def write(self, frames: np.ndarray) -> None:
        try:
            self.proc.stdin.write(memoryview(np.ascontiguousarray(frames)).cast("B"))
        except BrokenPipeError:
            self.proc.wait()
            raise GantoolError(f"FFmpeg stopped: {self._reason()}") from None

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.wait() != 0:
            reason = self._reason()
            self.abort()
            raise GantoolError(f"FFmpeg failed to write {self.path.name}: {reason}")
        os.chmod(self.tmp, 0o666 & ~UMASK)
        os.replace(self.tmp, self.path)
        self.log.close()

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.tmp.unlink(missing_ok=True)
        self.log.close()

    def _reason(self) -> str:
        self.log.seek(0)
        lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"exit code {self.proc.returncode}"


class AnimationWriter:
    """Frames gathered and written as one animated GIF or WebP by Pillow at ``close``."""

    def __init__(self, path: Path, size: tuple[int, int, int], frames: int, fps: float,
                 quality: int = 90):
        nbytes = frames * int(np.prod(size))
        if nbytes > ANIMATION_MAX_BYTES:
            raise GantoolError(
                f"{frames:,} frames of {size[1]}x{size[0]} ({nbytes / 2**30:.1f} GiB) are too "
                f"many for an animated {path.suffix} (at most {ANIMATION_MAX_BYTES / 2**30:.0f} "
                "GiB, held in memory): write .mp4, or fewer frames")
        self.path, self.fps, self.quality = path, fps, quality
        self.frames: list[np.ndarray] = []

    def write(self, frames: np.ndarray) -> None:
        self.frames.extend(frames.copy())

    def close(self) -> None:
        import io

        images = [pil_image(f) for f in self.frames]
        out = io.BytesIO()
        options = {"quality": self.quality} if self.path.suffix.lower() == ".webp" else {}
        images[0].save(out, format=self.path.suffix[1:].upper(), save_all=True,
                       append_images=images[1:], duration=round(1000 / self.fps), loop=0,
                       **options)
        with atomic_write(self.path) as f:
            f.write(out.getvalue())

    def abort(self) -> None:
        self.frames.clear()


def write_video(source: WalkFrames, path: Path, fps: float = 30.0, codec: str | None = None,
                crf: int | None = 18, bitrate: str | None = None, batch_size: int = 32,
                progress: bool = True, console=None) -> dict:
    """Encode every frame of ``source`` into ``path`` (.mp4/.mkv/.mov/.webm by FFmpeg,
    .gif/.webp by Pillow): the backend draws ``batch_size`` images per call (``batch_size //
    cells`` frames) while the frames before are encoded. Returns ``frames``, ``seconds``,
    ``frames_per_s``."""
    from rich.console import Console

    kind = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = (FfmpegWriter(path, source.shape, fps, codec, crf, bitrate) if kind == "ffmpeg"
              else AnimationWriter(path, source.shape, source.frames, fps))
    per_call = max(1, batch_size // source.walk.cells)
    bar = StepProgress(console or Console(stderr=True), "video", source.frames,
                       enabled=progress, short=("frames/s",))
    t0, done = time.perf_counter(), 0
    try:
        with bar, ThreadPoolExecutor(1) as pool:
            pending = None
            for chunk in batched(range(source.frames), per_call):
                frames = source.generate(chunk)
                if pending is not None:
                    pending.result()  # the encoder holds at most one batch besides this one
                pending = pool.submit(writer.write, frames)
                done += len(chunk)
                rate = done / max(time.perf_counter() - t0, 1e-9)
                bar.advance(done, {"frames/s": f"{rate:,.1f}"})
            if pending is not None:
                pending.result()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - t0
    return {"frames": done, "seconds": seconds, "frames_per_s": done / seconds}
