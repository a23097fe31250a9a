"""Serving on NVIDIA Triton: the model repository, the server, and the rendering client.

``repository`` writes files and imports neither torch nor Triton's packages at import time;
``server`` starts ``tritonserver``; ``client`` renders images through a running server.
"""

from gantool.serve.client import TritonGenerator
from gantool.serve.repository import VARIANTS, write_repository
from gantool.serve.server import TritonServer

__all__ = ["VARIANTS", "TritonGenerator", "TritonServer", "write_repository"]
