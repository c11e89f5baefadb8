"""Exemplar-based hole filling: multi-scale PatchMatch with patch voting (numpy + OpenCV).

Large holes filled by diffusion (OpenCV's Telea or Navier-Stokes inpainting) come out as
smeared streaks. This fills them instead with texture copied from the rest of the picture,
in the manner of Wexler, Shechtman and Irani, "Space-Time Completion of Video" (2007) and
Barnes et al., "PatchMatch" (2009):

1. build a Gaussian pyramid of the picture and the hole, down to where the hole is a few
   pixels across, and fill it there with Telea inpainting;
2. at each level, coarse to fine: find for every patch touching the hole its most similar
   patch lying wholly outside the hole (PatchMatch: random guesses, propagation between
   neighbours, random search around the best guess), then set every hole pixel to the
   similarity-weighted average of what the overlapping matched patches say it should be;
   repeat a few times, then carry the matches and the picture up one level.

Everything is vectorised over the hole's pixels. Arrays: picture HxWx3 float32, hole HxW
bool; coordinates are (row, column) integer arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from igpt_server.tooling import progress

#: patch radius (patches are 2r+1 pixels square)
RADIUS = 2
#: the coarsest level is the one where the hole is at most this many pixels from its edge
COARSEST_DEPTH = 6.0
#: levels are not made smaller than this many pixels on their shorter side
MIN_LEVEL_SIDE = 48
#: patches are matched at most at the level where this many patch centres touch the hole;
#: finer levels take that level's result scaled up (the caller keeps holes about that size)
MAX_TARGETS = 80_000
#: a source patch a whole picture height above or below its target costs as much as one
#: whose every pixel differs by this much in every channel (0: no preference for height)
VERTICAL_PRIOR = 100.0
#: random search looks this far (pixels) at the coarsest level, and this far above it
COARSE_SEARCH, FINE_SEARCH = 10_000, 8
#: EM rounds (match then vote) and PatchMatch iterations per round, at the coarsest level ...
COARSE_ROUNDS, COARSE_ITERATIONS = 6, 4
#: ... and at the finest level (levels in between interpolate)
FINE_ROUNDS, FINE_ITERATIONS = 2, 2


def telea(picture: np.ndarray, hole: np.ndarray, radius: int = 5) -> np.ndarray:
    """Diffusion fill (OpenCV's Telea) of a float32 HxWx3 picture in [0, 255]."""
    filled = cv2.inpaint(np.clip(picture, 0, 255).astype(np.uint8), hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    out = picture.copy()
    out[hole] = filled[hole].astype(np.float32)
    return out


def fill(picture: np.ndarray, hole: np.ndarray, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8: ``picture`` (HxWx3 uint8) with the ``hole`` (HxW bool) filled from the rest.

    Pixels outside the hole are returned unchanged. Falls back to Telea when no patch lies
    wholly outside the hole. Reports its progress per pyramid level and stops between levels
    when the request was cancelled (:mod:`igpt_server.tooling.progress`).
    """
    rng = np.random.default_rng(seed)
    pyramid = _pyramid(picture.astype(np.float32), hole)
    finest = next(i for i, (_, h) in enumerate(pyramid) if i == len(pyramid) - 1 or _targets(h) <= MAX_TARGETS)
    coarsest = len(pyramid) - 1
    image = telea(*pyramid[coarsest])
    nnf: _Field | None = None
    for level in range(coarsest, finest - 1, -1):
        progress.check_cancelled()
        step, steps = coarsest - level + 1, coarsest - finest + 1
        progress.report("running", f"filling (level {step} of {steps})", percent=100 * (step - 1) / steps)
        level_image, level_hole = pyramid[level]
        if level != coarsest:
            image = _carry_up(image, level_image, level_hole)
        problem = _Problem.of(level_hole)
        if problem is None:
            return telea(picture.astype(np.float32), hole).astype(np.uint8)
        nnf = problem.initial_field(rng, nnf)
        if level != coarsest:
            # rebuild the hole from the matched patches at this level's resolution: texture
            # comes in here, not from the blurry picture scaled up
            nnf = problem.match(image, nnf, rng, 0, 0)
            image = problem.vote(image, nnf)
        share = (level - finest) / max(coarsest - finest, 1)  # 1 at the coarsest level, 0 at the finest
        rounds = round(FINE_ROUNDS + share * (COARSE_ROUNDS - FINE_ROUNDS))
        iterations = round(FINE_ITERATIONS + share * (COARSE_ITERATIONS - FINE_ITERATIONS))
        search = COARSE_SEARCH if level == coarsest else FINE_SEARCH
        for _ in range(rounds):
            nnf = problem.match(image, nnf, rng, iterations, search)
            image = problem.vote(image, nnf)
        if level == finest:
            image = problem.copy_centres(image, nnf)
    if finest > 0:
        image = _carry_up(image, *pyramid[0])
    out = picture.copy()
    out[hole] = np.clip(image[hole] + 0.5, 0, 255).astype(np.uint8)
    return out


def _targets(hole: np.ndarray) -> int:
    size = 2 * RADIUS + 1
    return int((cv2.dilate(hole.astype(np.uint8), np.ones((size, size), np.uint8)) > 0).sum())


def _carry_up(image: np.ndarray, level_image: np.ndarray, level_hole: np.ndarray) -> np.ndarray:
    """The level's picture with its hole taken from ``image`` (a coarser fill) scaled up."""
    up = cv2.resize(image, (level_image.shape[1], level_image.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = level_image.copy()
    out[level_hole] = up[level_hole]
    return out


def _pyramid(picture: np.ndarray, hole: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Levels (picture, hole) from full size down; a coarse pixel is hole if any of the
    fine pixels under it is."""
    levels: list[tuple[np.ndarray, np.ndarray]] = [(picture, hole)]
    while True:
        image, mask = levels[-1]
        depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3).max()
        if depth <= COARSEST_DEPTH or min(mask.shape) // 2 < MIN_LEVEL_SIDE:
            return levels
        smaller: np.ndarray = np.asarray(cv2.pyrDown(image))
        height, width = smaller.shape[:2]
        padded = np.pad(mask, ((0, 2 * height - mask.shape[0]), (0, 2 * width - mask.shape[1])), mode="edge")
        coarse = np.asarray(padded.reshape(height, 2, width, 2).any(axis=(1, 3)), dtype=bool)
        levels.append((smaller, coarse))


@dataclass
class _Field:
    """A nearest-neighbour field: for target patch centre i, source centre (rows[i], cols[i])
    and the patch distance; ``shape`` is the level's size."""

    rows: np.ndarray
    cols: np.ndarray
    cost: np.ndarray
    shape: tuple[int, int]
    target_rows: np.ndarray
    target_cols: np.ndarray


@dataclass
class _Problem:
    """One pyramid level: which patch centres are targets (their patch touches the hole) and
    which are valid sources (their patch is wholly known)."""

    hole: np.ndarray
    target_rows: np.ndarray
    target_cols: np.ndarray
    source: np.ndarray  # HxW bool: valid source centres
    source_rows: np.ndarray
    source_cols: np.ndarray

    @classmethod
    def of(cls, hole: np.ndarray) -> _Problem | None:
        height, width = hole.shape
        r = RADIUS
        size = 2 * r + 1
        touched = cv2.dilate(hole.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
        inner = np.zeros_like(hole)
        inner[r : height - r, r : width - r] = True
        source = inner & ~touched
        if not source.any() or height < size or width < size:
            return None
        # every hole pixel must be covered by a target patch: clamp centres into the interior
        rows, cols = np.nonzero(touched)
        rows, cols = np.clip(rows, r, height - r - 1), np.clip(cols, r, width - r - 1)
        flat = np.unique(rows * width + cols)
        source_rows, source_cols = np.nonzero(source)
        return cls(hole, flat // width, flat % width, source, source_rows, source_cols)

    def initial_field(self, rng: np.random.Generator, coarse: _Field | None) -> _Field:
        """Random sources, or the coarser level's matches scaled up where they exist."""
        pick = rng.integers(0, self.source_rows.size, self.target_rows.size)
        rows, cols = self.source_rows[pick].copy(), self.source_cols[pick].copy()
        if coarse is not None:
            lookup = np.full(coarse.shape, -1, dtype=np.int64)
            lookup[coarse.target_rows, coarse.target_cols] = np.arange(coarse.target_rows.size)
            crow = np.minimum(self.target_rows // 2, coarse.shape[0] - 1)
            ccol = np.minimum(self.target_cols // 2, coarse.shape[1] - 1)
            index = lookup[crow, ccol]
            known = index >= 0
            up_rows = 2 * coarse.rows[index[known]] + self.target_rows[known] % 2
            up_cols = 2 * coarse.cols[index[known]] + self.target_cols[known] % 2
            ok = self._valid(up_rows, up_cols)
            rows[np.flatnonzero(known)[ok]] = up_rows[ok]
            cols[np.flatnonzero(known)[ok]] = up_cols[ok]
        cost = np.full(self.target_rows.size, np.inf, dtype=np.float32)
        return _Field(rows, cols, cost, self.hole.shape, self.target_rows, self.target_cols)

    def _valid(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        height, width = self.hole.shape
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        ok = np.zeros(rows.shape, dtype=bool)
        ok[inside] = self.source[rows[inside], cols[inside]]
        return ok

    def _distance(self, image: np.ndarray, rows: np.ndarray, cols: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Sum of squared differences between the target patches ``which`` and the source
        patches centred at (rows, cols)."""
        width = image.shape[1]
        flat = image.reshape(-1, 3)
        target = self.target_rows[which] * width + self.target_cols[which]
        source = rows * width + cols
        total = np.zeros(which.size, dtype=np.float32)
        for dy in range(-RADIUS, RADIUS + 1):
            for dx in range(-RADIUS, RADIUS + 1):
                offset = dy * width + dx
                diff = flat[target + offset] - flat[source + offset]
                total += np.einsum("ij,ij->i", diff, diff)
        if VERTICAL_PRIOR > 0:
            # scenes are layered (ground, horizon, sky): prefer patches from a similar height
            shift = (rows - self.target_rows[which]) * (VERTICAL_PRIOR / image.shape[0])
            total += (2 * RADIUS + 1) ** 2 * 3 * shift * shift
        return total

    def _try(self, image: np.ndarray, field: _Field, rows: np.ndarray, cols: np.ndarray) -> None:
        """Replace each target's match by the candidate (rows, cols) where valid and better."""
        ok = np.flatnonzero(self._valid(rows, cols))
        if ok.size == 0:
            return
        cost = self._distance(image, rows[ok], cols[ok], ok)
        better = cost < field.cost[ok]
        chosen = ok[better]
        field.rows[chosen] = rows[ok][better]
        field.cols[chosen] = cols[ok][better]
        field.cost[chosen] = cost[better]

    def match(self, image: np.ndarray, field: _Field, rng: np.random.Generator, iterations: int, search: int) -> _Field:
        """Improve the field on the current picture: PatchMatch propagation, then random
        search in windows halving from ``search`` pixels."""
        everyone = np.arange(self.target_rows.size)
        field.cost = self._distance(image, field.rows, field.cols, everyone)
        height, width = self.hole.shape
        lookup = np.full((height, width), -1, dtype=np.int64)
        lookup[self.target_rows, self.target_cols] = everyone
        for iteration in range(iterations):
            step = 1 if iteration % 2 == 0 else -1
            for dy, dx in ((0, step), (step, 0), (0, 2 * step), (2 * step, 0)):
                nr = np.clip(self.target_rows - dy, 0, height - 1)
                nc = np.clip(self.target_cols - dx, 0, width - 1)
                neighbour = lookup[nr, nc]
                has = neighbour >= 0
                rows = np.where(has, field.rows[np.maximum(neighbour, 0)] + dy, -1)
                cols = np.where(has, field.cols[np.maximum(neighbour, 0)] + dx, -1)
                self._try(image, field, rows, cols)
            radius = min(max(height, width), search)
            while radius >= 1:
                rows = field.rows + rng.integers(-radius, radius + 1, field.rows.size)
                cols = field.cols + rng.integers(-radius, radius + 1, field.cols.size)
                self._try(image, field, rows, cols)
                radius //= 2
        return field

    def vote(self, image: np.ndarray, field: _Field) -> np.ndarray:
        """Each hole pixel becomes the weighted mean of the values the matched patches that
        cover it propose; weights favour close matches."""
        height, width = self.hole.shape
        flat = image.reshape(-1, 3)
        sigma2 = max(float(np.percentile(field.cost, 75)), 1e-3)
        weight = np.exp(-field.cost / (2.0 * sigma2)).astype(np.float64) + 1e-12
        sums = np.zeros((height * width, 3), dtype=np.float64)
        weights = np.zeros(height * width, dtype=np.float64)
        target = self.target_rows * width + self.target_cols
        source = field.rows * width + field.cols
        for dy in range(-RADIUS, RADIUS + 1):
            for dx in range(-RADIUS, RADIUS + 1):
                offset = dy * width + dx
                where = target + offset
                values = flat[source + offset]
                for channel in range(3):
                    sums[:, channel] += np.bincount(where, values[:, channel] * weight, height * width)
                weights += np.bincount(where, weight, height * width)
        out = image.copy()
        hole = self.hole.reshape(-1)
        covered = hole & (weights > 0)
        out.reshape(-1, 3)[covered] = (sums[covered] / weights[covered, None]).astype(np.float32)
        return out

    def copy_centres(self, image: np.ndarray, field: _Field) -> np.ndarray:
        """Each hole pixel that is a patch centre takes its match's centre pixel: sharper than
        the vote's average, used once at the end."""
        out = image.copy()
        is_hole = self.hole[self.target_rows, self.target_cols]
        out[self.target_rows[is_hole], self.target_cols[is_hole]] = image[field.rows[is_hole], field.cols[is_hole]]
        return out
