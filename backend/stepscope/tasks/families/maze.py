"""Maze navigation: a red agent walks from its start to the green goal along 1-cell corridors, leaving a blue trail.

The open cells form a tree (every corridor is one cell wide and there are no loops), so the
route is unique; every other dead end is a wrong branch. The agent moves at most one cell per
frame, reaches the goal by the last frame and stays there.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from stepscope.tasks.core import (
    AGENT,
    FLOOR,
    GOAL,
    MIN_VALID_FRACTION,
    TRAIL,
    WALL,
    CandidateMeasure,
    CandidateRegions,
    Canvas,
    Family,
    ScoreResult,
    TaskInstance,
    blank_video,
    cell_means,
    classify,
    fill_cell,
    likeness,
    measure_from_masses,
    register,
)

Cell = tuple[int, int]
CLASSES = ["floor", "wall", "agent", "trail", "goal"]
# Route length in moves and junctions on the route, per difficulty.
ROUTE_MOVES = {1: (6, 10), 2: (9, 13), 3: (12, 16)}
MIN_JUNCTIONS = {1: 1, 2: 2, 3: 3}
MAX_ATTEMPTS = 400


def _neighbours(cell: Cell, grid: int):
    r, c = cell
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        if 0 <= r + dr < grid and 0 <= c + dc < grid:
            yield (r + dr, c + dc)


def grow_tree(grid: int, rng: np.random.Generator) -> np.ndarray:
    """Open cells (True) that form a tree of 1-cell corridors: grown cell by cell, a new cell may only
    touch its parent, never another corridor side-on or ahead (so no loops and no 2×2 rooms)."""
    opened = np.zeros((grid, grid), dtype=bool)
    root = (int(rng.integers(grid)), int(rng.integers(grid)))
    opened[root] = True
    frontier = [(n, root) for n in _neighbours(root, grid)]

    def is_open(r: int, c: int) -> bool:
        return 0 <= r < grid and 0 <= c < grid and bool(opened[r, c])

    while frontier:
        (r, c), (pr, pc) = frontier.pop(int(rng.integers(len(frontier))))
        if opened[r, c]:
            continue
        dr, dc = r - pr, c - pc
        qr, qc = dc, dr  # perpendicular
        ahead = [(r + dr, c + dc), (r + dr + qr, c + dc + qc), (r + dr - qr, c + dc - qc)]
        sides = [(r + qr, c + qc), (r - qr, c - qc)]
        if any(is_open(*x) for x in ahead + sides):
            continue
        opened[r, c] = True
        frontier.extend((n, (r, c)) for n in _neighbours((r, c), grid) if not opened[n])
    return opened


def tree_paths(opened: np.ndarray, source: Cell) -> dict[Cell, Cell | None]:
    """Breadth-first parents from `source` over open cells."""
    grid = opened.shape[0]
    parent: dict[Cell, Cell | None] = {source: None}
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        for n in _neighbours(cell, grid):
            if opened[n] and n not in parent:
                parent[n] = cell
                queue.append(n)
    return parent


def path_to(parent: dict[Cell, Cell | None], target: Cell) -> list[Cell]:
    path = [target]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return path[::-1]


def distances(opened: np.ndarray, source: Cell) -> np.ndarray:
    """Corridor distance from `source` to every cell (-1 where unreachable or a wall)."""
    grid = opened.shape[0]
    out = np.full(opened.shape, -1, dtype=int)
    out[source] = 0
    queue = deque([source])
    while queue:
        cell = queue.popleft()
        for n in _neighbours(cell, grid):
            if opened[n] and out[n] < 0:
                out[n] = out[cell] + 1
                queue.append(n)
    return out


def _degree(opened: np.ndarray, cell: Cell) -> int:
    return sum(bool(opened[n]) for n in _neighbours(cell, opened.shape[0]))


def agent_index(frame: int, frames: int, moves: int) -> int:
    """Route index of the agent at a frame: constant speed of moves/(frames−1) cells a frame, rounded."""
    return int(math.floor(frame * moves / (frames - 1) + 0.5))


def through_wall_route(instance: TaskInstance) -> list[Cell]:
    """A route from start to goal that crosses one wall cell (see Maze.wrong_video)."""
    opened = np.asarray(instance.params["open"], dtype=bool)
    route = [tuple(c) for c in instance.params["route"]]
    grid = opened.shape[0]
    best = None
    for i, (r, c) in enumerate(route):
        for j in range(len(route) - 1, i + 2, -1):
            (r2, c2) = route[j]
            if abs(r - r2) + abs(c - c2) == 2 and (r == r2 or c == c2):
                wall = ((r + r2) // 2, (c + c2) // 2)
                if not opened[wall] and (best is None or j - i > best[1] - best[0]):
                    best = (i, j, wall)
                break
    if best is not None:
        i, j, wall = best
        return route[: i + 1] + [wall] + route[j:]
    for i in range(1, len(route) - 1):
        for n in _neighbours(route[i], grid):
            if not opened[n]:
                return route[: i + 1] + [n] + route[i:]
    raise RuntimeError("a maze route with no wall beside it")


@register
class Maze(Family):
    name = "maze"
    description = "an agent walks from start to goal through a tree maze; one route, several dead ends"
    prompt = (
        "Maze: the red square walks along the white corridors from its start to the green goal, "
        "leaving a blue trail, without crossing the dark walls."
    )
    answer_param = "goal"  # the goal cell
    foreground = ("agent", "trail", "goal")

    def generate(self, difficulty: int, rng: np.random.Generator, canvas: Canvas) -> dict:
        grid = canvas.grid
        lo, hi = ROUTE_MOVES[difficulty]
        hi = min(hi, canvas.frames - 1)  # at most one cell a frame
        lo = min(lo, hi)
        for _ in range(MAX_ATTEMPTS):
            opened = grow_tree(grid, rng)
            leaves = [
                (int(r), int(c)) for r, c in zip(*np.nonzero(opened), strict=True) if _degree(opened, (r, c)) == 1
            ]
            if len(leaves) < 3:
                continue
            start = leaves[int(rng.integers(len(leaves)))]
            parent = tree_paths(opened, start)
            goals = []
            for leaf in leaves:
                if leaf == start:
                    continue
                route = path_to(parent, leaf)
                junctions = sum(_degree(opened, c) >= 3 for c in route[1:-1])
                if lo <= len(route) - 1 <= hi and junctions >= MIN_JUNCTIONS[difficulty]:
                    goals.append(leaf)
            if not goals:
                continue
            goal = goals[int(rng.integers(len(goals)))]
            ends = sorted(leaf for leaf in leaves if leaf != start)
            route = path_to(parent, goal)
            params = {
                "open": opened.astype(int).tolist(),
                "start": list(start),
                "goal": list(goal),
                "route": [list(c) for c in route],
                "ends": [list(e) for e in ends],
            }
            labels = ["goal" if e == goal else f"dead end at row {e[0]} col {e[1]}" for e in ends]
            return {"params": params, "candidates": labels, "answer": ends.index(goal)}
        raise RuntimeError(f"no maze found in {MAX_ATTEMPTS} attempts (grid {grid}, difficulty {difficulty})")

    # -- pictures -------------------------------------------------------------------------
    def render_route(self, instance: TaskInstance, route: list[Cell]) -> np.ndarray:
        """The video of the agent walking `route` (any list of cells, legal or not)."""
        canvas = instance.canvas
        p = instance.params
        video = blank_video(canvas, FLOOR)
        maze = video[0].copy()
        opened = np.asarray(p["open"], dtype=bool)
        for r, c in zip(*np.nonzero(~opened), strict=True):
            fill_cell(maze, int(r), int(c), WALL)
        fill_cell(maze, *p["goal"], GOAL)
        moves = len(route) - 1
        for t in range(canvas.frames):
            frame = maze.copy()
            here = agent_index(t, canvas.frames, moves)
            for cell in route[:here]:
                fill_cell(frame, *cell, TRAIL)
            fill_cell(frame, *route[here], AGENT)
            video[t] = frame
        return video

    def render(self, instance: TaskInstance) -> np.ndarray:
        return self.render_route(instance, [tuple(c) for c in instance.params["route"]])

    def candidate_video(self, instance: TaskInstance, index: int) -> np.ndarray:
        """The agent walks the corridors to candidate end `index` (the goal or a dead end)."""
        p = instance.params
        parent = tree_paths(np.asarray(p["open"], dtype=bool), tuple(p["start"]))
        return self.render_route(instance, path_to(parent, tuple(p["ends"][index])))

    def wrong_video(self, instance: TaskInstance) -> np.ndarray:
        """The agent takes a path through a wall: the longest shortcut of the route across one wall cell,
        or where there is none, a step into a wall beside the route and back."""
        return self.render_route(instance, through_wall_route(instance))

    # -- scoring --------------------------------------------------------------------------
    def score(self, instance: TaskInstance, video: np.ndarray) -> ScoreResult:
        p = instance.params
        opened = np.asarray(p["open"], dtype=bool)
        start, goal = tuple(p["start"]), tuple(p["goal"])
        frames = video.shape[0]
        moves = len(p["route"]) - 1
        max_jump = math.ceil(moves / (frames - 1)) + 1  # cells a frame, one of slack
        classes = classify(cell_means(video), CLASSES)  # (T, G, G)
        agent_class, trail_class = CLASSES.index("agent"), CLASSES.index("trail")
        per_frame = []
        located = legal = illegal = 0
        last: Cell | None = None
        last_t = 0
        reach: dict[Cell, np.ndarray] = {}  # corridor distances from each cell the agent was seen on
        for t in range(frames):
            cells = [(int(r), int(c)) for r, c in zip(*np.nonzero(classes[t] == agent_class), strict=True)]
            # Judged in every frame, the agent located or not: a second agent or a trail on a wall is illegal anyway.
            painted_walls = int(np.sum(~opened & ((classes[t] == agent_class) | (classes[t] == trail_class))))
            info: dict = {"frame": t, "agent": None, "agent_cells": len(cells), "painted_walls": painted_walls}
            problem = None
            if len(cells) == 1:
                cell = cells[0]
                info["agent"] = list(cell)
                located += 1
                if not opened[cell]:
                    problem = "agent on a wall"
                elif last is not None:
                    if last not in reach:
                        reach[last] = distances(opened, last)
                    gap = int(reach[last][cell])
                    info["moved"] = gap
                    if gap > max_jump * (t - last_t):
                        problem = f"jumped {gap} cells in {t - last_t} frame(s)"
                last, last_t = cell, t
            if problem is None and painted_walls:
                problem = f"{painted_walls} wall cell(s) painted as agent or trail"
            if problem:
                info["illegal"] = problem
                illegal += 1
            elif info["agent"] is not None:
                legal += 1
            per_frame.append(info)
        located_fraction = located / frames
        legal_fraction = legal / frames
        at_start = per_frame[0]["agent"] == list(start)
        at_goal = per_frame[-1]["agent"] == list(goal)
        passed = at_start and at_goal and illegal == 0 and located_fraction >= MIN_VALID_FRACTION
        if passed:
            reason = "reached the goal along the corridors"
        elif not at_start:
            reason = "the agent is not at its start in the first frame"
        elif illegal:
            first = next(f for f in per_frame if "illegal" in f)
            reason = f"illegal frame {first['frame']}: {first['illegal']}"
        elif not at_goal:
            reason = f"the agent ends at {per_frame[-1]['agent']}, not at the goal {list(goal)}"
        else:
            reason = f"the agent was located in only {located}/{frames} frames"
        score = 0.5 * legal_fraction + 0.5 * float(at_goal)
        details = {"located_fraction": located_fraction, "illegal_frames": illegal, "reached_goal": at_goal}
        return ScoreResult(score=float(score), passed=bool(passed), reason=reason, frames=per_frame, details=details)

    # -- candidates -----------------------------------------------------------------------
    def exclusive_cells(self, instance: TaskInstance) -> list[list[Cell]]:
        """For each candidate end: the cells of its route from the start that no other candidate's route uses."""
        p = instance.params
        opened = np.asarray(p["open"], dtype=bool)
        parent = tree_paths(opened, tuple(p["start"]))
        routes = [set(path_to(parent, tuple(e))) for e in p["ends"]]
        out = []
        for i, route in enumerate(routes):
            others = set().union(*(r for j, r in enumerate(routes) if j != i))
            out.append(sorted(route - others))
        return out

    def candidate_regions(self, instance: TaskInstance) -> CandidateRegions:
        """Each candidate's own cells (its route's cells that no other candidate's route uses, ending at its end), named
        at its end, in the last frame."""
        own = self.exclusive_cells(instance)
        return CandidateRegions(
            grid=instance.canvas.grid,
            cells=own,
            anchors=[tuple(e) for e in instance.params["ends"]],
            area=sorted(set().union(*map(set, own))),
            frames=[instance.canvas.frames - 1],
        )

    def candidates(self, instance: TaskInstance, video: np.ndarray) -> CandidateMeasure:
        """Mass on each candidate end: how much its own cells show a finished walk to it in the last frame.

        Every candidate is read the same way, whichever is the goal: its end cell by its likeness to the agent
        over the floor or over the goal green (the larger: an end is one or the other, and the answer's own end is
        the goal), each other own cell by its likeness to the agent or the trail over the floor; the mass is the
        mean over the own cells. So a half-drawn walk counts about one half at any end, and a video with no walk in
        it names the answer no more often than any other candidate (`stepscope.tasks.calibration`)."""
        regions = self.candidate_regions(instance)
        (last_frame,) = regions.frames
        last = cell_means(video[last_frame])  # (G, G, 3): the last frame shows the whole walk
        on_route = np.maximum(likeness(last, AGENT), likeness(last, TRAIL))
        at_end = np.maximum(likeness(last, AGENT), likeness(last, AGENT, GOAL))
        masses = []
        for cells, end in zip(regions.cells, regions.anchors, strict=True):
            masses.append(float(np.mean([at_end[c] if c == end else on_route[c] for c in cells])))
        return measure_from_masses(instance.candidates, masses, instance.answer)
