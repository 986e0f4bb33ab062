"""A pipeline graph drawn as a picture: a server-side layered layout, left to right.

Model-free. ``layout(graph)`` places each step of a graph (the format of runs/graph.py) in a
column by the longest path from the sources, orders each column by barycentres to reduce edge
crossings (a Sugiyama-style layout, as dagre and ELK's layered algorithm do), then gives each
box a position that pulls it level with its neighbours. Edges that skip columns run through
placeholder slots so they never cross a box. ``templates/runs/_dag.html`` renders the result as
an SVG at natural size: text never shrinks, large graphs scroll.

The run page colours nodes live by setting ``data-status`` on ``g.dag-node``; the colours are in
static/css/millrace.css keyed on that attribute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

NODE_WIDTH = 190
NODE_HEIGHT = 40
# Room between columns for the edges' data labels.
COLUMN_GAP = 120
ROW_GAP = 18
# A long edge passes a column through a thin slot of its own.
SLOT_HEIGHT = 10
PADDING = 16
LABEL_CHARS = 24
EDGE_LABEL_CHARS = 18
ORDER_SWEEPS = 12
POSITION_SWEEPS = 8
# A dense graph (every step wired to every later one) would need n² slots; past this many,
# the remaining long edges are drawn straight across instead of being routed.
MAX_SLOTS = 20_000


@dataclass
class DagNode:
    name: str
    label: str
    x: float
    y: float
    width: float
    height: float
    layer: int
    status: str = ""
    reused: bool = False
    href: str = ""

    @property
    def cx(self) -> float:
        return self.x + self.width / 2

    @property
    def cy(self) -> float:
        return self.y + self.height / 2

    @property
    def text_x(self) -> float:
        return self.x + 10

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height


@dataclass
class DagEdge:
    source: str
    target: str
    # "data" (a PipelineData passed from source to target) or "after" (run_after: order only)
    kind: str
    label: str
    short_label: str
    path: str
    label_x: float
    label_y: float

    @property
    def dashed(self) -> bool:
        return self.kind == "after"


@dataclass
class Dag:
    width: float
    height: float
    nodes: list[DagNode] = field(default_factory=list)
    edges: list[DagEdge] = field(default_factory=list)

    def node(self, name: str) -> DagNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _edges_of(steps: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(source, target, kind, label) per pair of steps; several data between one pair join."""
    names = {s["name"] for s in steps}
    producers: dict[str, str] = {}
    for step in steps:
        for output in step.get("outputs") or {}:
            producers.setdefault(output, step["name"])
    data: dict[tuple[str, str], list[str]] = defaultdict(list)
    after: set[tuple[str, str]] = set()
    for step in steps:
        target = step["name"]
        inputs = step.get("inputs") or {}
        for spec in inputs.values() if isinstance(inputs, dict) else ():
            source_data = spec.get("pipeline_data") if isinstance(spec, dict) else None
            if not isinstance(source_data, str):
                continue
            source = producers.get(source_data)
            if (
                source is not None
                and source != target
                and source_data not in data[(source, target)]
            ):
                data[(source, target)].append(source_data)
        run_after = step.get("run_after") or []
        for other in run_after if isinstance(run_after, list) else ():
            if isinstance(other, str) and other in names and other != target:
                after.add((other, target))
    edges = [(s, t, "data", ", ".join(labels)) for (s, t), labels in data.items()]
    # An order-only edge between steps already joined by data adds nothing to the picture.
    edges += [(s, t, "after", "") for s, t in sorted(after) if (s, t) not in data]
    return edges


def _layers(names: list[str], preds: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Longest path from the sources (Kahn's order). Steps on a cycle (invalid input) land
    after everything else rather than breaking the page."""
    succs: dict[str, list[str]] = defaultdict(list)
    indegree = dict.fromkeys(names, 0)
    for name in names:
        for p in preds[name]:
            succs[p].append(name)
            indegree[name] += 1
    layer = dict.fromkeys(names, 0)
    ready = [n for n in names if indegree[n] == 0]
    seen = 0
    while ready:
        current = ready.pop()
        seen += 1
        for child in succs[current]:
            layer[child] = max(layer[child], layer[current] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if seen < len(names):
        last = max(layer.values(), default=0)
        for name in names:
            if indegree[name] > 0:
                last += 1
                layer[name] = last
    return layer


def _crossings(
    order_a: dict[int, int], order_b: dict[int, int], segs: list[tuple[int, int]]
) -> int:
    """Crossings between two adjacent columns: inversions of the target order (Fenwick tree)."""
    pairs = sorted((order_a[a], order_b[b]) for a, b in segs)
    size = len(order_b) + 1
    tree = [0] * (size + 1)
    count = 0
    for seen, (_, pos) in enumerate(pairs):
        i = pos + 1
        below = 0
        while i > 0:
            below += tree[i]
            i -= i & -i
        count += seen - below
        i = pos + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


def _bend(xa: float, xb: float) -> float:
    """How far a curve's control points reach out horizontally from its ends."""
    return max(abs(xb - xa) / 2, 30.0)


def _on_curve(xa: float, ya: float, xb: float, yb: float, t: float) -> tuple[float, float]:
    """The point at ``t`` on the cubic curve drawn from (xa, ya) to (xb, yb)."""
    bend = _bend(xa, xb)
    u = 1 - t
    w0, w1, w2, w3 = u**3, 3 * u * u * t, 3 * u * t * t, t**3
    x = w0 * xa + w1 * (xa + bend) + w2 * (xb - bend) + w3 * xb
    y = (w0 + w1) * ya + (w2 + w3) * yb
    return x, y


def layout(
    graph: Mapping[str, Any],
    statuses: Mapping[str, str] | None = None,
    reused: set[str] | None = None,
) -> Dag:
    """Lay a pipeline graph out left to right.

    Args:
        graph: a graph as runs/graph.py describes it (assumed valid and cycle-free).
        statuses: step name → status, shown as ``data-status`` (colour) on each node.
        reused: names of steps reused from an earlier run, marked on their boxes.

    Returns:
        A Dag with every step as a box (x, y, width, height) and every edge as an SVG path.
    """
    statuses = statuses or {}
    reused = reused or set()
    raw_steps = graph.get("steps") or []
    steps = [s for s in raw_steps if isinstance(s, dict) and isinstance(s.get("name"), str)]
    # A repeated name (invalid input) keeps its first definition.
    unique: dict[str, dict[str, Any]] = {}
    for step in steps:
        unique.setdefault(step["name"], step)
    steps = list(unique.values())
    names = [s["name"] for s in steps]
    if not names:
        return Dag(width=2 * PADDING, height=2 * PADDING)

    edges = _edges_of(steps)
    preds: dict[str, list[str]] = {n: [] for n in names}
    for source, target, _, _ in edges:
        preds[target].append(source)
    layer_of = _layers(names, preds)

    # Vertices: 0..n-1 are steps, the rest slots that carry long edges through a column.
    index = {name: i for i, name in enumerate(names)}
    vlayer: list[int] = [layer_of[n] for n in names]
    chains: list[list[int]] = []  # per edge: the vertices it passes, source to target
    up: dict[int, list[int]] = defaultdict(list)
    down: dict[int, list[int]] = defaultdict(list)
    slots = 0
    for source, target, _, _ in edges:
        a, b = index[source], index[target]
        chain = [a]
        span = vlayer[b] - vlayer[a]
        if span > 1 and slots + span - 1 <= MAX_SLOTS:
            for step_layer in range(vlayer[a] + 1, vlayer[b]):
                vlayer.append(step_layer)
                chain.append(len(vlayer) - 1)
                slots += 1
        chain.append(b)
        chains.append(chain)
        for u, v in pairwise(chain):
            if vlayer[v] == vlayer[u] + 1:
                down[u].append(v)
                up[v].append(u)

    layer_count = max(vlayer) + 1
    columns: list[list[int]] = [[] for _ in range(layer_count)]
    for v, lay in enumerate(vlayer):
        columns[lay].append(v)
    # Between columns i and i+1, the segments that cross that gap.
    gap_segments: list[list[tuple[int, int]]] = [[] for _ in range(max(layer_count - 1, 0))]
    for u, targets in down.items():
        for v in targets:
            gap_segments[vlayer[u]].append((u, v))

    def positions() -> list[dict[int, int]]:
        return [{v: i for i, v in enumerate(col)} for col in columns]

    def total_crossings(pos: list[dict[int, int]]) -> int:
        return sum(
            _crossings(pos[i], pos[i + 1], segs) for i, segs in enumerate(gap_segments) if segs
        )

    # Barycentre ordering, alternating downstream and upstream sweeps; keep the best seen.
    pos = positions()
    best = [list(col) for col in columns]
    best_crossings = total_crossings(pos)
    for sweep in range(ORDER_SWEEPS):
        if best_crossings == 0:
            break
        forward = sweep % 2 == 0
        order = range(1, layer_count) if forward else range(layer_count - 2, -1, -1)
        for lay in order:
            neighbours = up if forward else down
            ref = pos[lay - 1] if forward else pos[lay + 1]
            here = pos[lay]

            def key(
                v: int,
                neighbours: dict[int, list[int]] = neighbours,
                ref: dict[int, int] = ref,
                here: dict[int, int] = here,
            ) -> float:
                linked = neighbours.get(v)
                if not linked:
                    return float(here[v])
                return sum(ref[w] for w in linked) / len(linked)

            columns[lay].sort(key=key)
            pos[lay] = {v: i for i, v in enumerate(columns[lay])}
        crossings = total_crossings(pos)
        if crossings < best_crossings:
            best_crossings = crossings
            best = [list(col) for col in columns]
    columns = best

    # Vertical positions: each box is pulled level with its neighbours' centres, then the
    # column is packed so boxes keep their order and never overlap.
    height = [float(NODE_HEIGHT if v < len(names) else SLOT_HEIGHT) for v in range(len(vlayer))]
    top = [0.0] * len(vlayer)
    for col in columns:
        y = 0.0
        for v in col:
            top[v] = y
            y += height[v] + ROW_GAP

    def pack(col: list[int], want: dict[int, float]) -> None:
        """Put each box as near its wanted top as the order and spacing allow: boxes that
        would collide merge into a block placed at the mean of their wishes (pool adjacent
        violators, the least-squares answer)."""
        # Each block: [first index in col, last index, sum of (want - offset), count, span]
        blocks: list[list[float]] = []
        for i, v in enumerate(col):
            block = [float(i), float(i), want[v], 1.0, height[v]]
            while blocks:
                prev = blocks[-1]
                prev_top = prev[2] / prev[3]
                if prev_top + prev[4] + ROW_GAP <= block[2] / block[3]:
                    break
                shift = prev[4] + ROW_GAP
                block = [
                    prev[0],
                    block[1],
                    prev[2] + block[2] - block[3] * shift,
                    prev[3] + block[3],
                    shift + block[4],
                ]
                blocks.pop()
            blocks.append(block)
        for first, last, total, count, _ in blocks:
            y = total / count
            for i in range(int(first), int(last) + 1):
                top[col[i]] = y
                y += height[col[i]] + ROW_GAP

    def centre(v: int) -> float:
        return top[v] + height[v] / 2

    for sweep in range(POSITION_SWEEPS):
        forward = sweep % 2 == 0
        order = range(1, layer_count) if forward else range(layer_count - 2, -1, -1)
        neighbours = up if forward else down
        for lay in order:
            col = columns[lay]
            want = {}
            for v in col:
                linked = neighbours.get(v)
                if linked:
                    want[v] = sum(centre(w) for w in linked) / len(linked) - height[v] / 2
                else:
                    want[v] = top[v]
            pack(col, want)
    lowest = min(top)
    top = [round(t - lowest + PADDING, 1) for t in top]

    def left(v: int) -> float:
        return PADDING + vlayer[v] * (NODE_WIDTH + COLUMN_GAP)

    nodes = [
        DagNode(
            name=name,
            label=_shorten(name, LABEL_CHARS),
            x=left(i),
            y=top[i],
            width=NODE_WIDTH,
            height=NODE_HEIGHT,
            layer=vlayer[i],
            status=statuses.get(name, "") or "",
            reused=name in reused,
        )
        for i, name in enumerate(names)
    ]

    fan_out: dict[str, int] = defaultdict(int)
    fan_in: dict[str, int] = defaultdict(int)
    for source, target, _, _ in edges:
        fan_out[source] += 1
        fan_in[target] += 1
    dag_edges: list[DagEdge] = []
    for (source, target, kind, label), chain in zip(edges, chains, strict=True):
        # Points: leave the source's right side, cross each slot's column flat, enter the
        # target's left side; the gaps between columns are smooth curves.
        points: list[tuple[float, float]] = [(left(chain[0]) + NODE_WIDTH, centre(chain[0]))]
        for v in chain[1:-1]:
            points.append((left(v), centre(v)))
            points.append((left(v) + NODE_WIDTH, centre(v)))
        points.append((left(chain[-1]), centre(chain[-1])))
        x0, y0 = points[0]
        d = [f"M{x0:.1f},{y0:.1f}"]
        for i in range(1, len(points)):
            (xa, ya), (xb, yb) = points[i - 1], points[i]
            if i % 2 == 1:
                bend = _bend(xa, xb)
                d.append(f"C{xa + bend:.1f},{ya:.1f} {xb - bend:.1f},{yb:.1f} {xb:.1f},{yb:.1f}")
            else:
                d.append(f"L{xb:.1f},{yb:.1f}")
        # Where edges fan out of one box their starts overlap, where they fan in their ends
        # do: put the label on the side where this edge is apart from the others.
        if fan_out[source] > fan_in[target]:
            (xa, ya), (xb, yb), t = points[-2], points[-1], 0.7
        elif fan_out[source] < fan_in[target]:
            (xa, ya), (xb, yb), t = points[0], points[1], 0.3
        else:
            (xa, ya), (xb, yb), t = points[0], points[1], 0.5
        label_x, label_y = _on_curve(xa, ya, xb, yb, t)
        dag_edges.append(
            DagEdge(
                source=source,
                target=target,
                kind=kind,
                label=label,
                short_label=_shorten(label, EDGE_LABEL_CHARS),
                path=" ".join(d),
                label_x=round(label_x, 1),
                label_y=round(label_y - 4, 1),
            )
        )

    width = PADDING * 2 + layer_count * NODE_WIDTH + (layer_count - 1) * COLUMN_GAP
    bottom = max(t + h for t, h in zip(top, height, strict=True))
    return Dag(width=width, height=bottom + PADDING, nodes=nodes, edges=dag_edges)
