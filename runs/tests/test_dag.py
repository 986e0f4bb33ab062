"""The server-side layered layout of pipeline graphs (runs/dag.py) and its SVG template."""

from __future__ import annotations

import random
import time
from typing import Any

from django.template.loader import render_to_string

from runs.dag import Dag, layout


def step(name: str, *, needs: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> dict[str, Any]:
    """A step producing ``<name>_out`` and consuming the outputs of ``needs``."""
    return {
        "name": name,
        "inputs": {f"in_{n}": {"pipeline_data": f"{n}_out"} for n in needs},
        "outputs": {f"{name}_out": {}},
        "run_after": list(after),
    }


def random_graph(n: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    steps = []
    for i in range(n):
        parents = rng.sample(range(i), min(i, rng.randint(0, 3)))
        steps.append(step(f"s{i}", needs=tuple(f"s{p}" for p in parents)))
    return {"steps": steps}


def assert_no_overlaps(dag: Dag) -> None:
    boxes = sorted(dag.nodes, key=lambda n: (n.x, n.y))
    for a in boxes:
        assert a.x >= 0 and a.y >= 0
        assert a.right <= dag.width and a.bottom <= dag.height
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            apart = a.right <= b.x or b.right <= a.x or a.bottom <= b.y or b.bottom <= a.y
            assert apart, f"{a.name} overlaps {b.name}"


def test_every_edge_goes_left_to_right() -> None:
    graph = random_graph(120)
    dag = layout(graph)
    for edge in dag.edges:
        assert dag.node(edge.source).layer < dag.node(edge.target).layer
        assert dag.node(edge.source).right < dag.node(edge.target).x


def test_a_step_sits_one_column_after_its_latest_input() -> None:
    # Longest-path layering: d waits for c (column 2), so d is in column 3 although a also
    # feeds it directly.
    dag = layout(
        {
            "steps": [
                step("a"),
                step("b", needs=("a",)),
                step("c", needs=("b",)),
                step("d", needs=("a", "c")),
            ]
        }
    )
    assert [dag.node(n).layer for n in "abcd"] == [0, 1, 2, 3]


def test_boxes_never_overlap() -> None:
    for seed in range(5):
        assert_no_overlaps(layout(random_graph(150, seed=seed)))
    fan = {
        "steps": [
            step("a"),
            *(step(f"m{i}", needs=("a",)) for i in range(60)),
            step("z", needs=tuple(f"m{i}" for i in range(60))),
        ]
    }
    assert_no_overlaps(layout(fan))


def test_ordering_removes_avoidable_crossings() -> None:
    # Two independent chains given interleaved: a drawing that crosses is never needed.
    graph = {
        "steps": [
            step("a1"),
            step("b1"),
            step("b2", needs=("a1",)),
            step("a2", needs=("b1",)),
            step("b3", needs=("b2",)),
            step("a3", needs=("a2",)),
        ]
    }
    dag = layout(graph)
    pairs = [(dag.node(e.source).cy, dag.node(e.target).cy) for e in dag.edges]
    for s1, t1 in pairs:
        for s2, t2 in pairs:
            assert not (s1 < s2 and t1 > t2), "two edges cross"


def test_a_chain_is_drawn_as_a_straight_line() -> None:
    dag = layout({"steps": [step("a"), step("b", needs=("a",)), step("c", needs=("b",))]})
    assert len({n.y for n in dag.nodes}) == 1


def test_edges_carry_data_names_and_run_after_is_dashed() -> None:
    dag = layout(
        {"steps": [step("prep"), step("train", needs=("prep",)), step("report", after=("train",))]}
    )
    data = next(e for e in dag.edges if e.target == "train")
    after = next(e for e in dag.edges if e.target == "report")
    assert (data.label, data.dashed) == ("prep_out", False)
    assert (after.source, after.label, after.dashed) == ("train", "", True)


def test_a_long_edge_is_routed_around_the_boxes_between() -> None:
    # a → d skips two columns; its path passes through slots, not through b or c.
    dag = layout(
        {
            "steps": [
                step("a"),
                step("b", needs=("a",)),
                step("c", needs=("b",)),
                step("d", needs=("a", "c")),
            ]
        }
    )
    long = next(e for e in dag.edges if e.source == "a" and e.target == "d")
    assert long.path.count("C") == 3  # one curve per gap between columns
    b, c = dag.node("b"), dag.node("c")
    ys = [
        float(p.split(",")[1])
        for p in long.path.replace("M", " ").replace("C", " ").replace("L", " ").split()
        if "," in p
    ]
    for y in ys[3:-3]:
        assert not (b.y <= y <= b.bottom) and not (c.y <= y <= c.bottom)


def test_three_hundred_steps_lay_out_quickly() -> None:
    graph = random_graph(300)
    started = time.perf_counter()
    dag = layout(graph)
    elapsed = time.perf_counter() - started
    assert len(dag.nodes) == 300
    assert_no_overlaps(dag)
    # Generous: the layout takes a few tens of ms; this only catches a quadratic blow-up.
    assert elapsed < 5, f"{elapsed:.2f} s"


def test_statuses_and_reuse_reach_the_svg() -> None:
    dag = layout(
        {"steps": [step("prep"), step("train", needs=("prep",))]},
        statuses={"prep": "Completed", "train": "Running"},
        reused={"prep"},
    )
    svg = render_to_string("runs/_dag.html", {"dag": dag})
    assert 'data-step="prep" data-status="Completed" data-reused="true"' in svg
    assert 'data-step="train" data-status="Running">' in svg
    assert svg.count('class="dag-edge"') >= 1
    assert ">prep_out</text>" in svg


def test_an_empty_or_odd_graph_does_not_break_the_page() -> None:
    assert layout({"steps": []}).nodes == []
    dag = layout({"steps": [step("a", needs=("a",)), {"name": 3}, "junk"]})
    assert [n.name for n in dag.nodes] == ["a"] and dag.edges == []
