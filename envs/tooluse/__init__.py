"""``tooluse``: ToolComp-style ReAct tool use over offline tools (``agentq.envs.make("tooluse")``).

Tools (plain Python objects LangGraph can bind through :func:`as_langchain_tool`): a safe
calculator, a sandboxed python interpreter, a calendar, BM25 wiki search over a local corpus,
and offline weather and stock tables. See ``docs/tooluse.md``.
"""

from agentq.envs.tooluse.env import ToolUseEnv, load_tasks
from agentq.envs.tooluse.executor import ToolExecutor, arun_tool_call, run_tool_call
from agentq.envs.tooluse.expert import ExpertPolicy, RandomToolPolicy, expert_actions, run_episode
from agentq.envs.tooluse.grading import grade_answer
from agentq.envs.tooluse.react import (
    ParsedTurn,
    format_finish,
    format_turn,
    parse_turn,
    system_prompt,
)
from agentq.envs.tooluse.sandbox import SandboxResult, SandboxUnavailableError, run_python
from agentq.envs.tooluse.toolcomp import (
    ProcessSupervisionExample,
    ToolCompStep,
    ToolCompTask,
    load_final_answer,
    load_process_supervision,
)
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
    as_langchain_tool,
    default_tools,
    safe_eval,
)

__all__ = [
    "TOOL_NAMES",
    "CalendarTool",
    "Calculator",
    "ExpertPolicy",
    "ParsedTurn",
    "ProcessSupervisionExample",
    "PythonInterpreter",
    "RandomToolPolicy",
    "SandboxResult",
    "SandboxUnavailableError",
    "StockTool",
    "Tool",
    "ToolCompStep",
    "ToolCompTask",
    "ToolError",
    "ToolExecutor",
    "ToolUseEnv",
    "WeatherTool",
    "WikiSearch",
    "arun_tool_call",
    "as_langchain_tool",
    "default_tools",
    "expert_actions",
    "format_finish",
    "format_turn",
    "grade_answer",
    "load_final_answer",
    "load_process_supervision",
    "load_tasks",
    "parse_turn",
    "run_episode",
    "run_tool_call",
    "run_python",
    "safe_eval",
    "system_prompt",
]
