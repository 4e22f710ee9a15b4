"""The execution service's public Python interface (see CONTRACT.md)."""

from execution.services.adapters import (
    ExecutionAdapter,
    LiveExecutionAdapter,
    PaperExecutionAdapter,
    get_execution_adapter,
)

__all__ = ["ExecutionAdapter", "LiveExecutionAdapter", "PaperExecutionAdapter", "get_execution_adapter"]
