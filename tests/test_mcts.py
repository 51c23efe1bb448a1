"""MCTS on the toy corridor: convergence to Q*, restore modes, candidates, limits."""

from __future__ import annotations

import asyncio

import pytest
from agentq.envs.toy import ToyEnv

from agentq.errors import ProposerError
from agentq.policies import RandomProposer
from agentq.protocols import BaseProposer
from agentq.search.mcts import MCTSConfig, run_mcts
from agentq.types import Candidate


def search(env, task, proposer, **cfg):
    cfg.setdefault("env_in_thread", False)
    return asyncio.run(run_mcts(env, task, proposer, MCTSConfig(**cfg)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_root_means_converge_to_exact_q_star(seed):
    env = ToyEnv(variant="stochastic", rooms=1, doors=3)
    task = "toy-test-0"
    tree = search(
        env, task, RandomProposer(seed), iterations=20000, n=9, c=4.0, rollout="random", seed=seed
    )
    q_star = env.optimal_q(task, 0)
    kids = tree.children(tree.root)
    assert {k.action for k in kids} == set(q_star)
    for k in kids:
        assert abs(k.q - q_star[k.action]) < 0.05, (k.action, k.q, q_star[k.action])
    assert max(kids, key=lambda k: k.visits).action == max(q_star, key=q_star.get)


def test_deep_corridor_most_visited_child_is_optimal():
    env = ToyEnv(variant="stochastic", rooms=3, doors=3)
    for task in ("toy-test-0", "toy-test-1", "toy-test-2"):
        tree = search(env, task, RandomProposer(0), iterations=5000, n=9, rollout="random")
        q_star = env.optimal_q(task, 0)
        best = max(tree.children(tree.root), key=lambda k: k.visits)
        assert best.action == max(q_star, key=q_star.get)
        assert abs(best.q - q_star[best.action]) < 0.05


@pytest.mark.parametrize("variant", ["stochastic", "deterministic"])
def test_replay_and_snapshot_give_identical_trees(variant):
    trees = []
    for snaps in (True, False):
        env = ToyEnv(variant=variant, rooms=3, doors=3, seed=7)
        env.seed(123)
        tree = search(
            env,
            "toy-train-4",
            RandomProposer(3),
            iterations=60,
            n=3,
            rollout="random",
            use_snapshots=snaps,
            seed=5,
        )
        trees.append([n.to_dict() for n in tree.nodes])
    assert trees[0] == trees[1]


class ScriptedProposer(BaseProposer):
    """Returns a fixed list of candidates every time."""

    def __init__(self, texts):
        self.texts = texts
        self.calls = 0

    async def apropose(self, context, n, *, valid_actions=None):
        self.calls += 1
        return [Candidate(t, logprob=-1.0) for t in self.texts[:n]]


def test_identical_candidates_are_merged_with_counts():
    env = ToyEnv(variant="deterministic", rooms=2)
    p = ScriptedProposer(["open[A]", "open[A]", "think first. open[B]", "open[A]", "junk"])
    tree = search(env, "toy-train-0", p, iterations=10, n=5, rollout="none")
    root_kids = tree.children(tree.root)
    assert [(k.action, k.count) for k in root_kids] == [
        ("open[A]", 3),
        ("think first. open[B]", 1),
        ("junk", 1),
    ]
    junk = root_kids[2]
    assert junk.invalid and "Invalid action" in (junk.observation or "")


def test_depth_limit_reward_and_early_stop():
    env = ToyEnv(variant="deterministic", rooms=3)
    p = ScriptedProposer(["junk"])
    tree = search(
        env,
        "toy-train-0",
        p,
        iterations=8,
        n=1,
        max_depth=2,
        rollout="policy",
        depth_limit_reward=-0.5,
    )
    assert max(n.depth for n in tree.nodes) == 2
    assert tree.root.q == pytest.approx(-0.5)

    env = ToyEnv(variant="deterministic", rooms=2)
    probs = env.door_probs("toy-train-1")
    best = [f"open[{'ABC'[r.index(1.0)]}]" for r in probs]

    class PathProposer(BaseProposer):
        async def apropose(self, context, n, *, valid_actions=None):
            room = 1 if "room 2" in context[-1]["content"] else 0
            return [Candidate(best[room])] * n

    tree = search(
        env, "toy-train-1", PathProposer(), iterations=50, n=1, rollout="none", early_stop=True
    )
    assert tree.iterations == 2 and tree.best_reward == 1.0


def test_proposer_faults_raise_proposer_error():
    env = ToyEnv()

    class Short(BaseProposer):
        async def apropose(self, context, n, *, valid_actions=None):
            return [Candidate("open[A]")]

    class Empty(BaseProposer):
        async def apropose(self, context, n, *, valid_actions=None):
            return [Candidate(" ")] * n

    class Boom(BaseProposer):
        async def apropose(self, context, n, *, valid_actions=None):
            raise RuntimeError("server down")

    for bad, msg in (
        (Short(), "1 candidates, 3 asked"),
        (Empty(), "empty"),
        (Boom(), "server down"),
    ):
        with pytest.raises(ProposerError, match=msg):
            search(env, "toy-train-0", bad, iterations=3, n=3)


def test_scorer_rollout_uses_scorer_values():
    from agentq.envs.toy import ToyOracleScorer

    env = ToyEnv(variant="deterministic", rooms=3)
    # one iteration per root child: each is valued once, by the scorer alone
    cfg = MCTSConfig(iterations=3, n=9, rollout="scorer", env_in_thread=False)
    tree = asyncio.run(
        run_mcts(
            env,
            "toy-train-2",
            RandomProposer(0),
            cfg,
            rollout_scorer=ToyOracleScorer(variant="deterministic", rooms=3),
        )
    )
    q_star = env.optimal_q("toy-train-2", 0)
    kids = tree.children(tree.root)
    assert len(kids) == 3 and all(k.visits == 1 for k in kids)
    for k in kids:
        assert k.q == pytest.approx(q_star[k.action])


def test_stochastic_outcomes_keep_observation_reward_and_done_together():
    from agentq.policies import RandomProposer

    env = ToyEnv(variant="stochastic")
    cfg = MCTSConfig(iterations=60, n=3, rollout="random", seed=5)
    redrawn = 0
    for tid in env.tasks("train")[:8]:
        tree = asyncio.run(run_mcts(env, tid, RandomProposer(seed=5), cfg))
        for node in tree.nodes:
            draws = node.outcomes or (
                [{"observation": node.observation, "reward": node.reward, "done": node.done}]
                if node.stepped and node.id
                else []
            )
            assert not node.outcomes or node.outcomes[0]["observation"] == node.observation
            assert not node.outcomes or node.outcomes[0]["reward"] == node.reward
            for d in draws:  # each record is one draw: its text says what its reward says
                if "You win!" in (d["observation"] or ""):
                    assert d["reward"] == 1.0
                if "You lose." in (d["observation"] or ""):
                    assert d["reward"] == 0.0
            if node.outcomes:
                redrawn += 1
                assert sum(o["count"] for o in node.outcomes) == node.visits
                # a terminal node's Q is the mean of the rewards it actually drew
                assert node.q == pytest.approx(node.mean_reward)
        wins = [n for n in tree.nodes if n.done and n.max_reward == 1.0]
        assert tree.best_reward == (1.0 if wins else 0.0)
    assert redrawn > 0  # the test saw revisited stochastic leaves


def test_best_leaf_uses_the_mean_of_a_stochastic_leaf():
    from agentq.data.pairs import best_leaf
    from agentq.types import TaskTree, TreeNode

    root = TreeNode(id=0, parent=None, action=None, depth=0, stepped=True, children=[1, 2])
    lucky = TreeNode(id=1, parent=0, action="a", depth=1, observation="lose", done=True)
    lucky.stepped, lucky.visits = True, 5
    for obs, r in (("lose", 0.0), ("lose", 0.0), ("lose", 0.0), ("win", 1.0)):
        lucky.add_outcome(obs, r, True)
    steady = TreeNode(id=2, parent=0, action="b", depth=1, observation="half", reward=0.5)
    steady.done, steady.stepped, steady.visits = True, True, 1
    tree = TaskTree(task_id="t", context=[], nodes=[root, lucky, steady])
    assert lucky.mean_reward == pytest.approx(0.2) and lucky.reward == 0.0
    assert best_leaf(tree).id == 2  # 0.5 expected beats one lucky draw
    assert tree.best_reward == 1.0  # but the best return any simulation reached is 1
    again = TaskTree.from_dict(tree.to_dict())
    assert again.nodes[1].outcomes == lucky.outcomes


def test_a_separate_rollout_policy_plays_the_simulations():
    """Expansion asks the proposer for n candidates; rollouts ask only the rollout policy."""

    class Counting(BaseProposer):
        def __init__(self) -> None:
            self.asked: list[int] = []
            self.inner = RandomProposer(0)

        def propose(self, context, n, *, valid_actions=None):
            self.asked.append(n)
            return self.inner.propose(context, n, valid_actions=valid_actions)

    expand, roll = Counting(), Counting()
    env = ToyEnv(variant="deterministic", rooms=3)
    cfg = MCTSConfig(iterations=12, n=2, rollout="policy", env_in_thread=False)
    asyncio.run(run_mcts(env, "toy-train-1", expand, cfg, rollout_proposer=roll))
    assert expand.asked and set(expand.asked) == {2}
    assert roll.asked and set(roll.asked) == {1}
