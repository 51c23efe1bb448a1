"""``agentq view``: one self-contained HTML file for trees.jsonl or eval trajectories.

Each task is an expandable tree (plain ``<details>`` elements, so it works without JavaScript):
every node shows its action, observation, visits, Q value and reward; the best path (the
highest-return terminal node's path, as the pairs builder defines it) is highlighted and open.
Eval trajectories show each method's chosen steps with the rejected candidates and their
scores. A search box filters tasks and opens the nodes that match. No CDN, no external file.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agentq.data.jsonl import iter_jsonl
from agentq.data.pairs import best_leaf
from agentq.errors import UserInputError
from agentq.render import observation_text
from agentq.types import TaskTree, Trajectory

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em} .meta{color:#666;font-size:.9em}
#q{width:40em;max-width:90%;padding:.4em;font-size:1em;margin:.5em 0 1em}
section.task{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.4em .8em}
section.task.hidden{display:none}
details{margin-left:1.2em;border-left:2px solid #e4e4e4;padding-left:.5em}
details.top{margin-left:0;border:none;padding:0}
summary{cursor:pointer;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.best>summary{background:#e3f6e3;font-weight:600}
.chosen{background:#e3f6e3;font-weight:600}
.bad>summary{color:#b00}
.hit>summary{outline:2px solid #f5b800}
.tag{display:inline-block;font-size:.8em;padding:0 .4em;margin-right:.3em;border-radius:3px;background:#eee;color:#333}
.tag.q{background:#e8eefc}.tag.r1{background:#c9f0c9}.tag.inv{background:#fbd4d4}
pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f4;padding:.4em;margin:.3em 0;max-height:24em;overflow:auto}
table.cands{border-collapse:collapse;margin:.3em 0}
table.cands td,table.cands th{border:1px solid #ddd;padding:.15em .5em;font-size:.9em;vertical-align:top}
"""

_JS = """
(function(){
  var box=document.getElementById('q');
  function run(){
    var q=box.value.trim().toLowerCase();
    document.querySelectorAll('.hit').forEach(function(e){e.classList.remove('hit');});
    document.querySelectorAll('section.task').forEach(function(sec){
      if(!q){sec.classList.remove('hidden');return;}
      var found=sec.textContent.toLowerCase().indexOf(q)>=0;
      sec.classList.toggle('hidden',!found);
      if(!found)return;
      sec.querySelectorAll('details').forEach(function(d){
        var s=d.querySelector(':scope>summary');
        var own=(s?s.textContent:'')+' '+Array.prototype.map.call(d.querySelectorAll(':scope>pre'),function(p){return p.textContent;}).join(' ');
        if(own.toLowerCase().indexOf(q)>=0){
          d.classList.add('hit');
          for(var p=d;p&&p.tagName;p=p.parentElement){if(p.tagName==='DETAILS')p.open=true;}
        }
      });
    });
    document.getElementById('count').textContent=document.querySelectorAll('section.task:not(.hidden)').length;
  }
  box.addEventListener('input',run);
})();
"""


def _e(s: Any) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def _short(s: str | None, n: int = 120) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _clip(s: str | None, max_chars: int) -> str:
    s = s or ""
    return (
        s if len(s) <= max_chars else s[:max_chars] + f"\n… ({len(s) - max_chars} more characters)"
    )


def _context_html(context: Sequence[Any], max_chars: int) -> str:
    body = "".join(
        f"<pre><b>{_e(m.get('role'))}</b>: {_e(_clip(str(m.get('content', '')), max_chars))}</pre>"
        for m in context
    )
    return f"<details><summary>initial context ({len(context)} messages)</summary>{body}</details>"


def tree_html(tree: TaskTree, max_chars: int = 4000) -> str:
    """HTML of one task's MCTS tree, best path highlighted and open."""
    best: set[int] = set()
    if len(tree.nodes) > 1:
        leaf = best_leaf(tree)
        best = {n.id for n in tree.path(leaf)}

    def node(n_id: int) -> str:
        n = tree.nodes[n_id]
        cls = ["best"] if n.id in best else []
        if n.invalid:
            cls.append("bad")
        tags = [
            f'<span class="tag">visits {n.visits}</span>',
            f'<span class="tag q">Q {n.q:.3f}</span>',
        ]
        if n.reward:
            tags.append(
                f'<span class="tag{" r1" if n.reward >= 1 else ""}">reward {n.reward:g}</span>'
            )
        if n.count > 1:
            tags.append(f'<span class="tag">×{n.count}</span>')
        if n.done:
            tags.append('<span class="tag">done</span>')
        if n.invalid:
            tags.append('<span class="tag inv">invalid</span>')
        if not n.stepped:
            tags.append('<span class="tag">not stepped</span>')
        kids = sorted(n.children, key=lambda c: -tree.nodes[c].q)
        inner = (
            f"<pre>{_e(_clip(n.action, max_chars))}</pre>"
            + (
                f"<pre>{_e(observation_text(_clip(n.observation, max_chars)))}</pre>"
                if n.observation
                else ""
            )
            + "".join(node(c) for c in kids)
        )
        op = " open" if n.id in best else ""
        return (
            f'<details class="{" ".join(cls)}"{op}><summary>{"".join(tags)}'
            f"{_e(_short(n.action))}</summary>{inner}</details>"
        )

    root = tree.nodes[0] if tree.nodes else None
    head = (
        f'<b>{_e(tree.task_id)}</b> <span class="meta">{_e(tree.env)} · {len(tree.nodes)} nodes · '
        f"{tree.iterations} iterations · best reward {tree.best_reward:g}"
        f"{' · FAILED: ' + _e(tree.error) if tree.status != 'ok' else ''}</span>"
    )
    kids = (
        ""
        if root is None
        else "".join(node(c) for c in sorted(root.children, key=lambda c: -tree.nodes[c].q))
    )
    return (
        f'<section class="task"><details class="top" open><summary>{head}</summary>'
        f"{_context_html(tree.context, max_chars)}{kids}</details></section>"
    )


def trajectories_html(
    task_id: str, runs: list[tuple[str, Trajectory]], max_chars: int = 4000
) -> str:
    """HTML of one task's eval trajectories, one expandable chain per method."""
    parts = []
    for method, t in runs:
        steps_html = ""
        for i, s in enumerate(t.steps):
            tags = []
            if s.reward:
                tags.append(
                    f'<span class="tag{" r1" if s.reward >= 1 else ""}">reward {s.reward:g}</span>'
                )
            if s.info.get("invalid"):
                tags.append('<span class="tag inv">invalid</span>')
            cands = ""
            if s.candidates:
                chosen = s.info.get("chosen")
                counts = s.counts or [1] * len(s.candidates)
                rows = "".join(
                    f'<tr class="{"chosen" if j == chosen else ""}"><td>{j}</td>'
                    f"<td>×{counts[j] if j < len(counts) else 1}</td>"
                    f"<td>{'—' if not s.scores or j >= len(s.scores) else f'{s.scores[j]:.4g}'}</td>"
                    f"<td>{_e(_clip(c, max_chars))}</td></tr>"
                    for j, c in enumerate(s.candidates)
                )
                cands = (
                    '<table class="cands"><tr><th>#</th><th>sampled</th><th>score</th>'
                    f"<th>candidate</th></tr>{rows}</table>"
                )
            steps_html += (
                f'<details class="best"><summary><span class="tag">step {i + 1}</span>{"".join(tags)}'
                f"{_e(_short(s.action))}</summary><pre>{_e(_clip(s.action, max_chars))}</pre>{cands}"
                f"<pre>{_e(observation_text(_clip(s.observation, max_chars)))}</pre></details>"
            )
        status = "success" if t.success else f"reward {t.reward:g}"
        err = f' · <span class="tag inv">error</span>{_e(t.error)}' if t.error else ""
        parts.append(
            f'<details{" open" if t.success else ""}><summary><span class="tag">{_e(method)}</span>'
            f'<span class="tag{" r1" if t.success else ""}">{status}</span>{len(t.steps)} steps · '
            f"{t.model_calls} model calls · {t.wall_s:.1f} s{err}</summary>{steps_html}</details>"
        )
    ctx = runs[0][1].context if runs else []
    head = f'<b>{_e(task_id)}</b> <span class="meta">{len(runs)} methods</span>'
    return (
        f'<section class="task"><details class="top" open><summary>{head}</summary>'
        f"{_context_html(ctx, max_chars)}{''.join(parts)}</details></section>"
    )


def _page(title: str, sections: Iterable[str], subtitle: str) -> str:
    secs = list(sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><div class="meta">{_e(subtitle)}</div>'
        '<input id="q" type="search" placeholder="search actions, observations, task ids…">'
        f' <span class="meta"><span id="count">{len(secs)}</span> tasks shown</span>'
        + "".join(secs)
        + f"<script>{_JS}</script></body></html>"
    )


def render_html(path: str | Path, *, max_chars: int = 4000, limit: int = 0) -> str:
    """The HTML page for a trees.jsonl or eval trajectories file (detected per record)."""
    records = list(iter_jsonl(path))
    if not records:
        raise UserInputError(f"{path}: no records to view")
    limit = limit or len(records)
    if all("nodes" in r for r in records):
        trees = [TaskTree.from_dict(r) for r in records[:limit]]
        return _page(
            f"agentq trees: {Path(path).name}",
            (tree_html(t, max_chars) for t in trees),
            f"{len(trees)} tasks · best path highlighted · Q = mean return of the simulations through a node",
        )
    if all("steps" in r and "task_id" in r for r in records):
        by_task: dict[str, list[tuple[str, Trajectory]]] = {}
        for r in records:
            r = dict(r)
            method = str(r.pop("method", "trajectory"))
            r.pop("n", None)
            r.pop("scorer", None)
            by_task.setdefault(r["task_id"], []).append((method, Trajectory.from_dict(r)))
        tasks = list(by_task.items())[:limit]
        return _page(
            f"agentq trajectories: {Path(path).name}",
            (trajectories_html(t, runs, max_chars) for t, runs in tasks),
            f"{len(tasks)} tasks · executed steps highlighted, rejected candidates with their scores",
        )
    raise UserInputError(
        f"{path}: neither a trees.jsonl (records with 'nodes') nor eval trajectories "
        "(records with 'steps')"
    )


def write_html(path: str | Path, out: str | Path, *, max_chars: int = 4000, limit: int = 0) -> Path:
    """Write the HTML view of ``path`` to ``out``."""
    page = render_html(path, max_chars=max_chars, limit=limit)
    o = Path(out)
    o.parent.mkdir(parents=True, exist_ok=True)
    o.write_text(page, encoding="utf-8")
    return o
