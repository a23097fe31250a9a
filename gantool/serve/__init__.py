"""Serving on NVIDIA Triton: the server, and the rendering client.

``server`` starts ``tritonserver``; ``client`` renders images through a running server (the
generator that draws on it is a backend: ``gantool.backends.triton_backend``). The model
repository they serve is one of ``gantool export``'s formats (``gantool.export.triton``).
"""

from gantool.backends.triton_backend import TritonGenerator
from gantool.serve.server import TritonServer

__all__ = ["TritonGenerator", "TritonServer"]
