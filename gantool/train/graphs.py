"""``train.cuda_graphs``: the main D-and-G update captured once as a CUDA graph and replayed.

One launch instead of hundreds of kernels, whose launch cost is what bounds small images on a
fast GPU. Needs one process on a CUDA GPU, capturable Adam and autocast without its cache
(``gantool.train.hardware`` refuses the rest).
"""

from __future__ import annotations

import torch


class CapturedUpdate:
    """``update.update(real, True, True)`` replayed from a graph captured on first use. The logs
    are the graph's own output tensors (valid until the next replay)."""

    def __init__(self, update):  # a gantool.train.update.GanUpdate
        self.update = update
        self.graph: torch.cuda.CUDAGraph | None = None
        self._real: torch.Tensor | None = None
        self._logs: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        """Capture again at the next call (the optimizers got new state tensors)."""
        self.graph = None

    def __call__(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.graph is None:
            self._capture(real)
        self._real.copy_(real)
        self.graph.replay()
        return dict(self._logs)

    def _capture(self, real: torch.Tensor) -> None:
        """Capture one D-and-G update. Capture needs warm-up steps first (the optimizers' state,
        cuDNN's workspaces); they are undone afterwards, so the run goes on as if eager."""
        up, device = self.update, self.update.hw.device
        opts = (up.opt_G, up.opt_D)
        _capturable(opts, device)
        had_state = [bool(opt.state) for opt in opts]
        tensors = [*up.G.parameters(), *up.G.buffers(), *up.D.parameters(), *up.D.buffers(),
                   *_state_tensors(opts)]
        saved = [x.detach().clone() for x in tensors]
        rng = torch.cuda.get_rng_state(device)
        self._real = real.clone()
        stream = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            for _ in range(2):
                up.update(self._real, update_d=True, update_g=True)
        stream.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._logs = up.update(self._real, update_d=True, update_g=True)
        with torch.no_grad():  # undo the warm-up
            torch._foreach_copy_(tensors, saved)
            for opt, had in zip(opts, had_state):
                if not had:  # Adam's state starts at zero
                    for v in _state_tensors([opt]):
                        v.zero_()
        torch.cuda.set_rng_state(rng, device)
        self.graph = graph


def _capturable(opts, device: torch.device) -> None:
    """Learning rates as device tensors a graph can read (a checkpoint's param groups may come
    from an uncaptured run)."""
    for opt in opts:
        for group in opt.param_groups:
            group["capturable"] = True
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=device)


def _state_tensors(opts) -> list[torch.Tensor]:
    return [v for opt in opts for st in opt.state.values() for v in st.values()
            if isinstance(v, torch.Tensor)]
