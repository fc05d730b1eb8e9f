"""Trajectory prediction: a red ball flies down between two walls, bouncing off them, and comes to rest on the floor.

The first frame shows the ball and, in pink, where it was one frame earlier: together they give
its velocity. The floor has several amber landing places; the ball lands on exactly one. The ball
moves from cell to cell (whole cells a frame, as the maze agent does: an 8×-spatial, 4×-temporal
VAE codes objects that fill their cells exactly, and lost a ball that moved by half cells), falls at
a constant number of rows a frame, reflects off the side walls (angle in = angle out), touches the
floor at the landing frame and stays there.
"""

from __future__ import annotations

import math

import numpy as np

from stepscope.tasks.core import (
    AGENT,
    CELL,
    FLOOR,
    GHOST,
    MIN_VALID_FRACTION,
    SLOT,
    WALL,
    CandidateMeasure,
    CandidateRegions,
    Canvas,
    Family,
    ScoreResult,
    TaskInstance,
    blank_video,
    fill_cell,
    likeness,
    measure_from_masses,
    register,
)

LAND_FRACTION = 0.625  # the ball should touch the floor by this fraction of the clip (frame 10 of 17)
TOLERANCE = 3.0  # pixels of slack on every position check
BALL_MIN_PIXELS, BALL_MAX_PIXELS = 24, 160  # an 8×8 ball has 64; a blob outside this is not one ball
BALL_MAX_SPREAD = 4.5  # std of the blob's pixel coordinates (the 8×8 ball: 2.3)
BALL_LIKENESS = 0.5  # a ball pixel: likeness to the ball's colour above this, after the 3×3 box average


def fall_rows(canvas: Canvas) -> int:
    """Rows the ball falls a frame: the fewest whole rows that bring it from row 1 to the floor by the landing
    fraction of the clip (1 on the default 64×64×17 canvas)."""
    return max(1, math.ceil((canvas.grid - 3) / math.ceil(LAND_FRACTION * (canvas.frames - 1))))


def start_row(canvas: Canvas) -> int:
    """The ball's row in the first frame: one fall below the top row, so the pink mark of frame −1 is in view."""
    return fall_rows(canvas)


def land_frame(canvas: Canvas) -> int:
    """The first frame with the ball on the floor (its row G − 2)."""
    return math.ceil((canvas.grid - 2 - start_row(canvas)) / fall_rows(canvas))


def x_range(canvas: Canvas) -> tuple[int, int]:
    """Smallest and largest left edge of the ball between the walls (columns 0 and G−1 are walls)."""
    return CELL, canvas.size - 2 * CELL


def reflect(u: float, lo: float, hi: float) -> float:
    """Position after elastic bounces between lo and hi of an unbounded position u."""
    span = hi - lo
    v = (u - lo) % (2 * span)
    return lo + (v if v <= span else 2 * span - v)


def ball_position(params: dict, canvas: Canvas, t: int) -> tuple[int, int]:
    """Left/top edge of the ball at frame t (t = −1: the pink mark of the first frame), in pixels: whole cells."""
    lo, hi = x_range(canvas)
    land = params["land_frame"]
    u = min(t, land)
    x = reflect(params["x0"] + params["travel"] // land * u, lo, hi)
    rest = canvas.size - 2 * CELL
    y = min(start_row(canvas) * CELL + fall_rows(canvas) * CELL * u, rest)
    return int(x), int(y)


def bounces(x0: int, travel: int, lo: int, hi: int) -> int:
    span = hi - lo
    return int(abs(math.floor((x0 - lo + travel) / span))) if travel else 0


@register
class Trajectory(Family):
    name = "trajectory"
    description = "a ball bounces between two walls and lands on one of several landing places"
    prompt = (
        "Trajectory: the red ball keeps moving the way it came from the pink mark, bounces off the dark "
        "side walls and comes to rest on one of the amber landing places on the floor."
    )
    answer_param = "landing_column"
    foreground = ("agent",)  # the ball

    def generate(self, difficulty: int, rng: np.random.Generator, canvas: Canvas) -> dict:
        grid = canvas.grid
        lo, hi = x_range(canvas)
        columns = list(range(1, grid - 1))  # where the ball can be, in cells
        span = grid - 3  # columns of travel between the walls
        travel_cells = {1: (1, span), 2: (span + 1, 2 * span), 3: (2 * span + 1, 3 * span)}[difficulty]
        land = land_frame(canvas)
        # Whole columns a frame: the speeds whose travel over the fall lies in the difficulty's range (the nearest
        # speed when none does, which only a canvas whose fall is longer than the range can cause).
        speeds = [v for v in range(1, 3 * span + 1) if travel_cells[0] <= v * land <= travel_cells[1]]
        speeds = speeds or [max(1, round(travel_cells[1] / land))]
        start_col = int(rng.choice(columns))
        speed = int(rng.choice(speeds)) * (1 if rng.random() < 0.5 else -1)
        x0, travel = start_col * CELL, speed * land * CELL
        land_col = int(round(reflect(x0 + travel, lo, hi))) // CELL
        # The tempting wrong answer: straight on as if there were no walls, stopped by the nearest one.
        naive_col = int(np.clip(x0 + travel, lo, hi)) // CELL
        slots = {land_col}
        if naive_col != land_col:
            slots.add(naive_col)
        others = [c for c in columns if c not in slots]
        count = min(difficulty + 1, len(columns))
        slots |= {int(c) for c in rng.choice(others, size=count - len(slots), replace=False)}
        slots_sorted = sorted(slots)
        params = {
            "x0": x0,
            "travel": travel,
            "land_frame": land,
            "slots": slots_sorted,
            "landing_column": land_col,
            "bounces": bounces(x0, travel, lo, hi),
        }
        labels = [f"landing place at column {c}" for c in slots_sorted]
        return {"params": params, "candidates": labels, "answer": slots_sorted.index(land_col)}

    # -- pictures -------------------------------------------------------------------------
    def _scene(self, instance: TaskInstance) -> np.ndarray:
        canvas = instance.canvas
        grid = canvas.grid
        scene = blank_video(canvas, FLOOR)[0]
        for r in range(grid):
            fill_cell(scene, r, 0, WALL)
            fill_cell(scene, r, grid - 1, WALL)
        for c in range(grid):
            fill_cell(scene, grid - 1, c, WALL)
            if c in instance.params["slots"]:
                # Amber with a 1-pixel wall-coloured edge left and right, so neighbouring places stay apart.
                scene[(grid - 1) * CELL :, c * CELL + 1 : (c + 1) * CELL - 1] = SLOT
        return scene

    def render_path(self, instance: TaskInstance, position) -> np.ndarray:
        """The video of the ball at `position(t)` (left, top edge in pixels) in each frame."""
        canvas = instance.canvas
        scene = self._scene(instance)
        land = instance.params["land_frame"]
        video = blank_video(canvas)
        for t in range(canvas.frames):
            frame = scene.copy()
            if t <= land:  # while moving, the pink mark shows the previous position
                _square(frame, *position(t - 1), GHOST)
            _square(frame, *position(t), AGENT)
            video[t] = frame
        return video

    def render(self, instance: TaskInstance) -> np.ndarray:
        return self.render_path(instance, lambda t: ball_position(instance.params, instance.canvas, t))

    def candidate_video(self, instance: TaskInstance, index: int) -> np.ndarray:
        """The ground truth for the answer; for another landing place, the ball flies straight (no bounce) to it."""
        p = instance.params
        if index == instance.answer:
            return self.render(instance)
        x0, x1 = p["x0"], p["slots"][index] * CELL
        land = p["land_frame"]

        def position(t: int) -> tuple[float, float]:
            _, y = ball_position(p, instance.canvas, t)
            return x0 + (x1 - x0) * min(t, land) / land, y

        return self.render_path(instance, position)

    def wrong_video(self, instance: TaskInstance) -> np.ndarray:
        """The ball flies straight to the nearest other landing place."""
        p = instance.params
        right = p["landing_column"]
        wrong = min((c for c in p["slots"] if c != right), key=lambda c: (abs(c - right), c))
        return self.candidate_video(instance, p["slots"].index(wrong))

    # -- scoring --------------------------------------------------------------------------
    def locate(self, ball: np.ndarray) -> tuple[float, float] | None:
        """Left/top edge of the one ball in a ball-likeness map; None when there is no single compact ball."""
        ys, xs = np.nonzero(ball > BALL_LIKENESS)
        if not (BALL_MIN_PIXELS <= len(xs) <= BALL_MAX_PIXELS):
            return None
        if xs.std() > BALL_MAX_SPREAD or ys.std() > BALL_MAX_SPREAD:
            return None
        return float(xs.mean()) - (CELL - 1) / 2, float(ys.mean()) - (CELL - 1) / 2

    def score(self, instance: TaskInstance, video: np.ndarray) -> ScoreResult:
        p, canvas = instance.params, instance.canvas
        frames = video.shape[0]
        lo, hi = x_range(canvas)
        land = p["land_frame"]
        vx = abs(p["travel"]) / land
        vy = fall_rows(canvas) * CELL
        start_y = start_row(canvas) * CELL
        rest_y = canvas.size - 2 * CELL
        in_walls = buried_mask(canvas)
        per_frame, located, legal, illegal = [], 0, 0, 0
        last, last_t = None, 0
        ball = likeness(box_average(video), AGENT)
        for t in range(frames):
            pos = self.locate(ball[t])
            info: dict = {"frame": t, "ball": None if pos is None else [round(pos[0], 2), round(pos[1], 2)]}
            problem = None
            if pos is not None:
                located += 1
                x, y = pos
                if not (lo - TOLERANCE <= x <= hi + TOLERANCE) or y > rest_y + TOLERANCE:
                    problem = "the ball is inside a wall or the floor"
                elif last is not None:
                    gap = t - last_t
                    dx, dy = x - last[0], y - last[1]
                    if dy < -TOLERANCE:
                        problem = f"the ball rose by {-dy:.1f} px"
                    elif dy > gap * vy + TOLERANCE or abs(dx) > gap * vx + TOLERANCE:
                        problem = f"the ball moved ({dx:.1f}, {dy:.1f}) px in {gap} frame(s), faster than launched"
                last, last_t = pos, t
            # Judged in every frame, the ball located or not: a ball's worth of its colour deep in a wall or the
            # floor is illegal anyway (fewer pixels are noise: a located ball needs BALL_MIN_PIXELS).
            buried = int(np.sum(in_walls & (ball[t] > BALL_LIKENESS)))
            info["ball_pixels_in_walls"] = buried
            if problem is None and buried >= BALL_MIN_PIXELS:
                problem = f"{buried} ball pixels more than {TOLERANCE:g} px inside a wall or the floor"
            if problem:
                info["illegal"] = problem
                illegal += 1
            elif pos is not None:
                legal += 1
            per_frame.append(info)
        first, final = per_frame[0]["ball"], per_frame[-1]["ball"]
        at_start = first is not None and abs(first[0] - p["x0"]) <= TOLERANCE and abs(first[1] - start_y) <= TOLERANCE
        landed_column = None
        if final is not None and abs(final[1] - rest_y) <= TOLERANCE:
            column = int(round(final[0] / CELL))
            if abs(final[0] - column * CELL) <= TOLERANCE and column in p["slots"]:
                landed_column = column
        landed_right = landed_column == p["landing_column"]
        located_fraction = located / frames
        passed = at_start and landed_right and illegal == 0 and located_fraction >= MIN_VALID_FRACTION
        if passed:
            reason = f"landed on column {landed_column}"
        elif not at_start:
            reason = "the ball is not at its start in the first frame"
        elif illegal:
            bad = next(f for f in per_frame if "illegal" in f)
            reason = f"frame {bad['frame']}: {bad['illegal']}"
        elif not landed_right:
            where = "no landing place" if landed_column is None else f"column {landed_column}"
            reason = f"the ball rests on {where}, not on column {p['landing_column']}"
        else:
            reason = f"the ball was located in only {located}/{frames} frames"
        legal_fraction = legal / frames
        details = {
            "landed_column": landed_column,
            "landed_slot": p["slots"].index(landed_column) if landed_column is not None else None,
            "located_fraction": located_fraction,
            "illegal_frames": illegal,
        }
        score = 0.5 * legal_fraction + 0.5 * float(landed_right)
        return ScoreResult(score=float(score), passed=bool(passed), reason=reason, frames=per_frame, details=details)

    # -- candidates -----------------------------------------------------------------------
    def candidate_regions(self, instance: TaskInstance) -> CandidateRegions:
        """Each landing place's cell: the one above it (row G − 2), from the landing frame on."""
        canvas = instance.canvas
        cells = [[(canvas.grid - 2, c)] for c in instance.params["slots"]]
        return CandidateRegions(
            grid=canvas.grid,
            cells=cells,
            anchors=[own[0] for own in cells],
            area=[own[0] for own in cells],
            frames=list(range(instance.params["land_frame"], canvas.frames)),
        )

    def candidates(self, instance: TaskInstance, video: np.ndarray) -> CandidateMeasure:
        """Mass at each landing place: ball colour in the cell above it, averaged over the frames after landing."""
        regions = self.candidate_regions(instance)
        ball = likeness(video[regions.frames], AGENT)  # (T', H, W)
        masses = [
            float(np.mean([ball[:, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL].mean() for r, c in cells]))
            for cells in regions.cells
        ]
        return measure_from_masses(instance.candidates, masses, instance.answer)


def buried_mask(canvas: Canvas) -> np.ndarray:
    """(S, S) bool: pixels more than TOLERANCE px inside a side wall or the floor, where no legal ball reaches
    (the ball's left edge stays in [8 − TOLERANCE, S − 16 + TOLERANCE], its top edge ≤ S − 16 + TOLERANCE)."""
    size, depth = canvas.size, CELL - int(TOLERANCE)
    ys, xs = np.mgrid[0:size, 0:size]
    return (xs < depth) | (xs >= size - depth) | (ys >= size - depth)


def box_average(video: np.ndarray) -> np.ndarray:
    """Each pixel replaced by the mean of its 3×3 neighbourhood (edge pixels repeated): pixel noise averages out,
    the ball's inside is unchanged and its edge pixels keep two thirds of its colour."""
    padded = np.pad(np.asarray(video, dtype=np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = video.shape[1:3]
    return sum(padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0


def _square(frame: np.ndarray, x: float, y: float, colour: tuple[int, int, int]) -> None:
    """Draw the 8×8 ball with its top-left corner at (x, y), rounded to whole pixels, clipped to the frame."""
    size = frame.shape[0]
    x0, y0 = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
    xa, xb, ya, yb = max(x0, 0), min(x0 + CELL, size), max(y0, 0), min(y0 + CELL, size)
    if xa < xb and ya < yb:
        frame[ya:yb, xa:xb] = colour
