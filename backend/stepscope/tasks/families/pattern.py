"""Pattern transformation: a blue shape turns clockwise one quarter turn for each red square in the top-left corner.

The shape sits in a 4×4-cell box at the centre; its four orientations are all different, so the
answer frame shows which of four candidates the video chose, and a blend of two orientations
(a superposition) matches neither well. Turns happen at evenly spaced frames; the last turn is
followed by the answer held to the end.
"""

from __future__ import annotations

import math

import numpy as np

from stepscope.tasks.core import (
    AGENT,
    CELL,
    FLOOR,
    MIN_VALID_FRACTION,
    TRAIL,
    CandidateMeasure,
    CandidateRegions,
    Canvas,
    Family,
    ScoreResult,
    TaskInstance,
    blank_video,
    cell_means,
    fill_cell,
    likeness,
    measure_from_masses,
    register,
)

BOX = 4  # the shape's box, in cells
MATCH_IOU = 0.6  # a frame shows an orientation when its soft IoU with it reaches this
SHAPE_CELLS = {1: 4, 2: 5, 3: 6}
MAX_TURNS = 3  # the candidates are 0..MAX_TURNS quarter turns; an instance's answer is 1..MAX_TURNS
MAX_ATTEMPTS = 200


def rotate(cells: list[tuple[int, int]], turns: int) -> list[tuple[int, int]]:
    """Cells of the box after `turns` clockwise quarter turns about the box's centre."""
    out = list(cells)
    for _ in range(turns % 4):
        out = [(c, BOX - 1 - r) for r, c in out]
    return sorted(out)


def orientation_at(frame: int, frames: int, turns: int) -> int:
    """Quarter turns done by a frame: the clip is split into turns+1 equal parts."""
    return min(turns, frame * (turns + 1) // frames)


def settled_frame(frames: int) -> int:
    """The first frame in which every candidate (0 to 3 quarter turns) shows its last orientation."""
    return math.ceil(MAX_TURNS * frames / (MAX_TURNS + 1))


def box_origin(canvas: Canvas) -> int:
    return canvas.grid // 2 - BOX // 2


def masks(cells: list[tuple[int, int]]) -> np.ndarray:
    """The four orientations as 4×4 0/1 masks: (4, BOX, BOX)."""
    out = np.zeros((4, BOX, BOX), dtype=np.float32)
    for j in range(4):
        for r, c in rotate(cells, j):
            out[j, r, c] = 1.0
    return out


def nonnegative_weights(target: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Least-squares weights w ≥ 0 with basis.T @ w ≈ target, exactly, by trying every support set."""
    k = basis.shape[0]
    best, best_err = np.zeros(k), float(np.sum(target**2))
    for support in range(1, 2**k):
        idx = [i for i in range(k) if support >> i & 1]
        w, *_ = np.linalg.lstsq(basis[idx].T, target, rcond=None)
        if np.all(w >= 0):
            err = float(np.sum((basis[idx].T @ w - target) ** 2))
            if err < best_err - 1e-9:
                best = np.zeros(k)
                best[idx] = w
                best_err = err
    return best


@register
class Pattern(Family):
    name = "pattern"
    description = "a shape turns clockwise one quarter turn per red square; which orientation is the answer"
    prompt = (
        "Pattern: the blue shape turns clockwise by a quarter turn once for each red square in the top-left "
        "corner, then stays still."
    )
    answer_param = "turns"  # quarter turns
    foreground = ("trail",)  # the shape

    def generate(self, difficulty: int, rng: np.random.Generator, canvas: Canvas) -> dict:
        size = SHAPE_CELLS[difficulty]
        for _ in range(MAX_ATTEMPTS):
            cells = {(int(rng.integers(BOX)), int(rng.integers(BOX)))}
            while len(cells) < size:
                r, c = sorted(cells)[int(rng.integers(len(cells)))]
                dr, dc = [(-1, 0), (1, 0), (0, -1), (0, 1)][int(rng.integers(4))]
                if 0 <= r + dr < BOX and 0 <= c + dc < BOX:
                    cells.add((r + dr, c + dc))
            shape = sorted(cells)
            if len({tuple(rotate(shape, j)) for j in range(4)}) == 4:
                break
        else:
            raise RuntimeError(f"no shape with four distinct orientations in {MAX_ATTEMPTS} attempts")
        turns = int(rng.integers(1, MAX_TURNS + 1))
        params = {"shape": [list(c) for c in shape], "turns": turns}
        labels = [f"{j} quarter turn(s) clockwise" for j in range(MAX_TURNS + 1)]
        return {"params": params, "candidates": labels, "answer": turns}

    # -- pictures -------------------------------------------------------------------------
    def render_turns(self, instance: TaskInstance, turns: int) -> np.ndarray:
        """The video of the shape making `turns` quarter turns (the cue bar still shows the instance's count)."""
        canvas = instance.canvas
        shape = [tuple(c) for c in instance.params["shape"]]
        origin = box_origin(canvas)
        video = blank_video(canvas, FLOOR)
        for t in range(canvas.frames):
            for c in range(instance.params["turns"]):
                fill_cell(video[t], 0, c, AGENT)
            for r, c in rotate(shape, orientation_at(t, canvas.frames, turns)):
                fill_cell(video[t], origin + r, origin + c, TRAIL)
        return video

    def render(self, instance: TaskInstance) -> np.ndarray:
        return self.render_turns(instance, instance.params["turns"])

    def candidate_video(self, instance: TaskInstance, index: int) -> np.ndarray:
        """The shape makes `index` quarter turns."""
        return self.render_turns(instance, index)

    def wrong_video(self, instance: TaskInstance) -> np.ndarray:
        """One quarter turn too many (or, after three, one too few)."""
        turns = instance.params["turns"]
        return self.render_turns(instance, turns + 1 if turns < 3 else turns - 1)

    def box_mass(self, instance: TaskInstance, video: np.ndarray) -> np.ndarray:
        """Shape colour of each box cell's mean colour: (T, BOX, BOX) in [0, 1]."""
        origin = box_origin(instance.canvas)
        box = video[:, origin * CELL : (origin + BOX) * CELL, origin * CELL : (origin + BOX) * CELL]
        return likeness(cell_means(box), TRAIL)

    # -- scoring --------------------------------------------------------------------------
    def score(self, instance: TaskInstance, video: np.ndarray) -> ScoreResult:
        turns = instance.params["turns"]
        candidates = masks([tuple(c) for c in instance.params["shape"]])
        mass = self.box_mass(instance, video)
        frames = video.shape[0]
        per_frame, located, illegal = [], 0, 0
        done, last = 0, None
        for t in range(frames):
            m = mass[t]
            iou = np.minimum(m, candidates).sum(axis=(1, 2)) / np.maximum(
                np.maximum(m, candidates).sum(axis=(1, 2)), 1e-6
            )
            best = int(np.argmax(iou))
            info: dict = {"frame": t, "orientation": None, "iou": [round(float(x), 3) for x in iou]}
            if iou[best] >= MATCH_IOU:
                info["orientation"] = best
                located += 1
                if last is not None:
                    step = (best - last) % 4
                    if step > 1:
                        info["illegal"] = f"turned {step} quarter turns at once"
                    elif done + step > turns:
                        info["illegal"] = f"turned past the answer ({done + step} > {turns} quarter turns)"
                    done += step
                elif best != 0:
                    info["illegal"] = "the first recognised orientation is not the starting one"
                illegal += "illegal" in info
                last = best
            per_frame.append(info)
        first, final = per_frame[0]["orientation"], per_frame[-1]["orientation"]
        answered = final == turns and done == turns
        located_fraction = located / frames
        passed = first == 0 and answered and illegal == 0 and located_fraction >= MIN_VALID_FRACTION
        if passed:
            reason = f"turned {turns} quarter turn(s)"
        elif first != 0:
            reason = "the first frame does not show the starting orientation"
        elif illegal:
            bad = next(f for f in per_frame if "illegal" in f)
            reason = f"frame {bad['frame']}: {bad['illegal']}"
        elif not answered:
            reason = f"the answer frame shows orientation {final}, not {turns}"
        else:
            reason = f"the shape was recognised in only {located}/{frames} frames"
        details = {"final_orientation": final, "turns_seen": done, "located_fraction": located_fraction}
        score = 0.5 * (located - illegal) / frames + 0.5 * float(answered)
        return ScoreResult(score=float(score), passed=bool(passed), reason=reason, frames=per_frame, details=details)

    # -- candidates -----------------------------------------------------------------------
    def candidate_regions(self, instance: TaskInstance) -> CandidateRegions:
        """Each orientation's cells in the box, named at the box's corners clockwise from the top left (0, 1, 2, 3
        quarter turns); the fit reads the whole box, in the frames where every candidate has settled."""
        canvas = instance.canvas
        origin = box_origin(canvas)
        shape = [tuple(c) for c in instance.params["shape"]]
        corners = [(0, 0), (0, BOX - 1), (BOX - 1, BOX - 1), (BOX - 1, 0)]
        return CandidateRegions(
            grid=canvas.grid,
            cells=[[(origin + r, origin + c) for r, c in rotate(shape, j)] for j in range(MAX_TURNS + 1)],
            anchors=[(origin + r, origin + c) for r, c in corners],
            area=[(origin + r, origin + c) for r in range(BOX) for c in range(BOX)],
            frames=list(range(settled_frame(canvas.frames), canvas.frames)),
        )

    def candidates(self, instance: TaskInstance, video: np.ndarray) -> CandidateMeasure:
        """Weight of each orientation in the frames where every candidate has settled (the same frames whatever
        the answer): non-negative least squares of the box's shape mass on the four orientation masks (a
        superposition of two gives both a weight)."""
        mass = self.box_mass(instance, video[self.candidate_regions(instance).frames]).mean(axis=0)
        basis = masks([tuple(c) for c in instance.params["shape"]]).reshape(4, -1)
        weights = nonnegative_weights(mass.reshape(-1), basis)
        return measure_from_masses(instance.candidates, weights.tolist(), instance.answer)
