"""The pipeline engine: pipeline model and checks, `${...}` rendering, tool registry, `run_pipeline`.

Pure: no database, no HTTP server, no environment, no wall clock (`now` is an argument).
"""

from engine.context import ToolContext, ToolLimits
from engine.pipeline import PIPELINE_SCHEMA, Pipeline, Step, compile_pipeline
from engine.registry import Tool, ToolRegistry
from engine.runner import RunResult, call_tool, is_async_capable, run_pipeline, run_pipeline_async

__all__ = [
    "PIPELINE_SCHEMA",
    "Pipeline",
    "RunResult",
    "Step",
    "Tool",
    "ToolContext",
    "ToolLimits",
    "ToolRegistry",
    "call_tool",
    "compile_pipeline",
    "is_async_capable",
    "run_pipeline",
    "run_pipeline_async",
]
