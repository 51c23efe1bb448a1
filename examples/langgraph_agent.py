"""A LangGraph agent with Q-value-guided action selection, offline, on SmolLM2 and the toy env.

    python examples/langgraph_agent.py                 # small: 4 tasks, n=4 (a few minutes on CPU)
    python examples/langgraph_agent.py --tasks 20 --n 8
    python examples/langgraph_agent.py --scorer qmodel:out/qmodel   # a trained Q-model instead

What it shows:

1. the selection node inside a ReAct graph (``create_q_agent``): the agent's own chat model
   (SmolLM2-135M-Instruct through ``LocalChatModel``, tools rendered into its prompt) samples N
   candidate tool calls, a Scorer ranks them, only the winner runs;
2. the inspection metadata of one step (``response_metadata["agentq_selection"]``): every
   candidate, its score and the winner;
3. the with/without comparison: the same agent with ``n=1`` (no selection) and with ``n=N``,
   rolled out over the same toy tasks with ``rollout``.

The default scorer is the toy environment's oracle (``toy-oracle``, exact Q*), standing in for a
trained Q-model so the example needs no training run; any SCORER spec works (``--scorer``).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    """Run the example (see the module docstring)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="smollm2", help="MODEL spec of the agent's chat model")
    ap.add_argument("--scorer", default="toy-oracle", help="SCORER spec (default: the toy oracle)")
    ap.add_argument("--tasks", type=int, default=4, help="toy test tasks per rollout (size knob)")
    ap.add_argument("--rooms", type=int, default=2, help="rooms per corridor (steps per task)")
    ap.add_argument("--n", type=int, default=4, help="candidates per step")
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from agentq.envs import make
    from agentq.integrations.chat_model import LocalChatModel
    from agentq.integrations.langgraph import (
        SELECTION_KEY,
        EnvTools,
        create_q_agent,
        create_selection_node,
        rollout,
    )

    from agentq.specs import resolve_scorer

    env = make("toy", variant="deterministic", rooms=args.rooms, doors=3)
    # The environment as LangGraph tools. "verbs" gives one tool per action verb: open(arg="A")
    # runs open[A] (easier for a 135M model than act(action="open[A]")).
    tools = EnvTools(env, mode="verbs")
    scorer_opts = (
        {"variant": "deterministic", "rooms": args.rooms, "doors": 3}
        if args.scorer == "toy-oracle"
        else {}
    )
    # The scorer knows env text actions (open[A]); env_scorer lets it score the tool calls.
    scorer = tools.env_scorer(resolve_scorer(args.scorer, **scorer_opts))
    llm = LocalChatModel(
        model=args.model,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    choice = tools.tool_names[0]  # force a tool call: the reply starts with its fixed prefix

    # 1. The agent: a ReAct graph whose model node is the selection node.
    agent = create_q_agent(llm, tools, scorer, n=args.n, tool_choice=choice)
    print("graph nodes:", [n for n in agent.get_graph().nodes if not n.startswith("__")])

    # 2. The node on its own: one step, and what was considered. (create_q_agent builds the same
    #    node; in your own graph: graph.add_node("agent", node).)
    node = create_selection_node(llm.bind_tools(tools.tools, tool_choice=choice), scorer, n=args.n)
    task = env.tasks("test")[0]
    messages = tools.reset(task)
    t0 = time.perf_counter()
    update = node.invoke({"messages": messages})
    winner = update["messages"][0]
    sel = winner.response_metadata[SELECTION_KEY]
    print(
        f"\none step on {task} ({time.perf_counter() - t0:.1f}s): {sel['n']} samples, "
        f"{len(sel['candidates'])} distinct"
    )
    for i, (c, s) in enumerate(
        zip(sel["candidates"], sel["scores"] or [None] * len(sel["candidates"]), strict=True)
    ):
        mark = "->" if i == sel["index"] else "  "
        score = "  n/a" if s is None else f"{s:5.2f}"
        print(f"  {mark} score {score}  x{c['count']}  {c['text'][:90]!r}")
    print(
        "  winner tool calls:",
        json.dumps(winner.tool_calls and [tc["args"] for tc in winner.tool_calls]),
    )

    # 3. With and without selection, same tasks, same seeds.
    ids = env.tasks("test")[: args.tasks]
    rows = []
    for label, n in (("without (n=1)", 1), (f"with (n={args.n})", args.n)):
        graph = create_q_agent(llm, tools, scorer, n=n, tool_choice=choice)
        res = rollout(graph, tools, tasks=ids, seed=args.seed, progress=True)
        rows.append((label, res))
    print(
        f"\nrollout over {len(ids)} toy tasks ({args.rooms} rooms, deterministic), scorer {args.scorer}:"
    )
    print(
        f"  {'agent':16s} {'success':>8s} {'reward':>8s} {'steps':>6s} {'invalid':>8s} {'calls':>6s} {'wall s':>7s}"
    )
    for label, res in rows:
        m = res.metrics
        print(
            f"  {label:16s} {m['success_rate']:8.2f} {m['mean_reward']:8.2f} {m['mean_steps']:6.2f} "
            f"{m['invalid_rate']:8.2f} {m['model_calls']:6d} {res.wall_s:7.1f}"
        )


if __name__ == "__main__":
    main()
