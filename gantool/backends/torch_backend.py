"""PyTorch backend: a checkpoint's generator (EMA weights by default) in eval mode, with each
BatchNorm folded into the convolution before it (as the ONNX export does).

Options: ``precision`` fp32 | fp16 | bf16 (the network's weights and activations in that type;
images are rounded from float32 either way), ``compile`` (``torch.compile``), and
``cuda_graphs`` (CUDA only: each batch size is captured once and replayed, which removes the
per-layer launch cost that dominates small batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gantool.backends.base import PRECISIONS, check_class_input, class_input, model_prior
from gantool.device import pick_device
from gantool.errors import GantoolError, OptionError
from gantool.latent import latents, truncation_input
from gantool.models import run_generator
from gantool.models.checkpoint import load_generator, weights_sha256
from gantool.models.layers import fold_batchnorm
from gantool.sampling.images import to_uint8_tensor

DTYPES = dict(zip(PRECISIONS, (torch.float32, torch.float16, torch.bfloat16)))


class TorchGenerator:
    def __init__(self, path: str, device: str = "auto", ema: bool = True,
                 prior: str | None = None, precision: str = "fp32", compile: bool = False,
                 cuda_graphs: bool = False, **_):
        if precision not in PRECISIONS:
            raise GantoolError(f"unknown precision {precision!r}; choose "
                               f"{', '.join(PRECISIONS)}")
        self.device = pick_device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise OptionError("cuda_graphs", "needs a CUDA device (found none, or cpu asked for)",
                              see="device")
        self.dtype = DTYPES[precision]
        net, m, config, _ = load_generator(path, ema=ema, device=self.device)
        self.weights_sha256 = weights_sha256(net)  # before folding: as exports record it
        self.net = fold_batchnorm(net).to(self.dtype)  # as exported graphs do: fewer passes
        data = config.get("data")
        self.data_path = data.get("path") if isinstance(data, dict) else None  # trained on
        self.resolution, self.channels, self.nz = m.resolution, m.channels, m.nz
        self.classes = m.classes  # class names of a conditional model; () otherwise
        self.class_counts = m.class_counts  # its training images per class, where recorded
        self.prior = model_prior(prior, m.prior)
        self.default_truncation = m.truncation
        self.forward = torch.compile(self.net) if compile else self.net
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[int, tuple] = {}  # batch -> (graph, inputs, images)

    def generate(self, seeds: Sequence[int], truncation: float | None,
                 classes: Sequence[int] | None = None) -> np.ndarray:
        return self.generate_z(latents(seeds, self.nz, self.prior, truncation),
                               class_input(self.classes, seeds, classes), truncation)

    @torch.no_grad()
    def generate_z(self, z: np.ndarray, c: np.ndarray | None = None,
                   truncation: float | None = None) -> np.ndarray:
        images = self._draw(z, c, truncation)
        if images.device.type == "cpu":
            return images.numpy()  # (B, H, W, C) uint8
        # Into an array numpy allocates: it asks for huge pages, which makes the first write to
        # 100 MB (32 images at 1024 px) about 3x faster than into torch's own host allocation.
        out = np.empty(tuple(images.shape), np.uint8)
        torch.from_numpy(out).copy_(images)
        return out

    @torch.no_grad()
    def generate_into(self, seeds: Sequence[int], truncation: float | None,
                      out: np.ndarray, classes: Sequence[int] | None = None) -> None:
        """``generate`` into ``out`` (uint8 (B, H, W, C), e.g. a render's shared-memory slot):
        a GPU copies its images straight there."""
        z = latents(seeds, self.nz, self.prior, truncation)
        torch.from_numpy(out).copy_(self._draw(z, class_input(self.classes, seeds, classes),
                                               truncation))

    def _draw(self, z: np.ndarray, c: np.ndarray | None,
              truncation: float | None) -> torch.Tensor:
        check_class_input(self.classes, c)
        psi = truncation_input(truncation, self.prior, len(z))
        inputs = [a if a is None else torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(
            self.device, self.dtype) for a in (z, c, psi)]
        return self._replay(inputs) if self.cuda_graphs else self._images(*inputs)

    def _images(self, z: torch.Tensor, c: torch.Tensor | None,
                psi: torch.Tensor | None = None) -> torch.Tensor:
        """z (and c, psi) -> uint8 images on the device (a quarter of float32's bytes to copy
        back)."""
        return to_uint8_tensor(run_generator(self.forward, z, c, psi))

    def _replay(self, inputs: list) -> torch.Tensor:
        """z (and c, psi) -> uint8 images through a CUDA graph captured for this batch size on
        first use (the graph's own output buffer: valid until the next replay)."""
        b = inputs[0].shape[0]
        if b not in self._graphs:
            static = [a if a is None else torch.zeros_like(a) for a in inputs]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the graph, as capture requires
                for _ in range(3):
                    self._images(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._images(*static)
            self._graphs[b] = (graph, static, static_out)
        graph, static, static_out = self._graphs[b]
        for buffer, value in zip(static, inputs):
            if buffer is not None:
                buffer.copy_(value)
        graph.replay()
        return static_out
