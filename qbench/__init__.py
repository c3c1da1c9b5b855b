"""qbench: int8 quantized 2D convolution through competing backends, checked and timed.

Plugin authors need `hookimpl`, `BackendInfo`, `Verdict`, `UnsupportedError` and the tensor types
below; users need `qbench.functional.conv2d` and `qbench.ops`.
"""

from qbench.backends import BackendInfo, Verdict
from qbench.errors import QbenchError, UnsupportedError
from qbench.hookspecs import hookimpl
from qbench.problem import ConvProblem
from qbench.quantized import ConvParams, QuantizedActivation, QuantizedWeight

__version__ = "0.1.0"

__all__ = [
    "BackendInfo", "ConvParams", "ConvProblem", "QbenchError", "QuantizedActivation",
    "QuantizedWeight", "UnsupportedError", "Verdict", "__version__", "hookimpl",
]
