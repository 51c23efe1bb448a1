"""ToolComp-style tool use: ReAct steps over calculator, python, calendar, wiki, weather, stock."""

from agentq.envs.tooluse.tools import (
    TOOL_NAMES,
    Calculator,
    CalendarTool,
    PythonInterpreter,
    StockTool,
    Tool,
    ToolError,
    WeatherTool,
    WikiSearch,
    arun_tool_call,
    as_langchain_tool,
    default_tools,
    run_tool_call,
    safe_eval,
)

__all__ = [
    "TOOL_NAMES",
    "CalendarTool",
    "Calculator",
    "PythonInterpreter",
    "StockTool",
    "Tool",
    "ToolError",
    "WeatherTool",
    "WikiSearch",
    "arun_tool_call",
    "as_langchain_tool",
    "default_tools",
    "run_tool_call",
    "safe_eval",
]
