"""The execution service's public Python interface (see CONTRACT.md)."""

from execution.services.adapters import (
    ExecutionAdapter,
    LiveExecutionAdapter,
    PaperExecutionAdapter,
    get_execution_adapter,
)
from execution.services.orders import ExecutionResult, ExecutionService

__all__ = [
    "ExecutionAdapter",
    "ExecutionResult",
    "ExecutionService",
    "LiveExecutionAdapter",
    "PaperExecutionAdapter",
    "get_execution_adapter",
]
