from execution.services.adapters.base import ExecutionAdapter
from execution.services.adapters.factory import get_execution_adapter
from execution.services.adapters.live import LiveExecutionAdapter
from execution.services.adapters.paper import PaperExecutionAdapter

__all__ = ["ExecutionAdapter", "LiveExecutionAdapter", "PaperExecutionAdapter", "get_execution_adapter"]
