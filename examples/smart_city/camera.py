"""One traffic camera's frame of its approach, rasterised with numpy from SUMO's vehicle positions.

The camera hangs above the stop line and looks up the approach, against the traffic; the frame
is in the approach's own coordinates (along the lanes, across them), whatever the approach's
angle on the map:

    frame: uint8 [3, 128, 32]  (channels, along the road, across it)
    rows:    0 = the stop line, 127 = 102 m upstream (0.8 m per pixel): the last ~100 m
    columns: the approach's controlled lanes from the right kerb (column 28) leftwards, lane 0
             (SUMO's rightmost) first, each as wide as SUMO says (3.2 m -> 4 px; 2.4-4 m -> 3-5 px),
             up to 5 lanes; dashed markings between lanes, a solid line left of the last lane,
             verge and kerbs around.

Why this view: a queue builds back from the stop line, so the last 100 m hold what a signal
controller needs; at 0.8 m per pixel a car is 6 px long and the 2.5 m gap between queued cars
3 px wide, and a frame stays 12 KiB (the raw upload a split plan is measured against). A vehicle
further than 102 m upstream is not in the frame, and QueueNet's labels count only what is.
Moving vehicles are blurred along the road (a 0.2 s exposure), halted ones show brake lights, the
light dims towards dusk and sensor noise rises as it does.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["H", "W", "M_PER_PX", "VIEW_M", "MAX_LANES", "Vehicle", "render", "road", "lane_columns"]

H, W = 128, 32
M_PER_PX = 0.8
VIEW_M = H * M_PER_PX
MAX_LANES = 5
EXPOSURE_S = 0.2
RIGHT_KERB_PX = 28  # first column right of lane 0
_PALETTE = np.array(
    [
        [200, 200, 205],
        [30, 30, 35],
        [160, 20, 25],
        [20, 60, 150],
        [230, 230, 235],
        [90, 95, 100],
        [200, 160, 30],
        [40, 110, 60],
        [120, 60, 30],
        [140, 170, 200],
    ],
    dtype=np.float32,
)

# (lane slot 0..4 on this approach, distance of the front from the stop line in m, length m, speed m/s, id)
Vehicle = tuple[int, float, float, float, str]


def lane_columns(widths_m: tuple[float, ...]) -> list[tuple[int, int]]:
    """``[first, end)`` columns of each lane, lane 0 at the right kerb."""
    cols, right = [], RIGHT_KERB_PX
    for w in widths_m[:MAX_LANES]:
        px = int(np.clip(round(w / M_PER_PX), 3, 5))
        cols.append((right - px, right))
        right -= px
    return cols


_ROADS: dict[tuple[float, ...], np.ndarray] = {}


def road(widths_m: tuple[float, ...]) -> np.ndarray:
    """The empty approach, float32 ``[H, W, 3]`` in 0..255 (cached per lane layout)."""
    key = tuple(round(w, 2) for w in widths_m[:MAX_LANES])
    if key in _ROADS:
        return _ROADS[key]
    cols = lane_columns(key)
    img = np.empty((H, W, 3), dtype=np.float32)
    img[:] = (88, 112, 74)  # verge
    left = cols[-1][0]
    img[:, left:RIGHT_KERB_PX] = (62, 62, 66)  # asphalt
    img[:, RIGHT_KERB_PX : RIGHT_KERB_PX + 2] = (150, 150, 145)  # kerb
    img[:, max(left - 2, 0) : left] = (200, 170, 40)  # the solid line towards oncoming traffic
    dashes = (np.arange(H) // 4) % 2 == 0  # 3.2 m dashes between lanes
    for first, _ in cols[:-1]:
        img[dashes, first] = (190, 190, 185)
    img[0:2, left:RIGHT_KERB_PX] = (235, 235, 230)  # stop line
    _ROADS[key] = img
    return img


def _colour(vid: str) -> np.ndarray:
    return _PALETTE[zlib.crc32(vid.encode()) % len(_PALETTE)]


def render(vehicles: list[Vehicle], widths_m: tuple[float, ...], brightness: float, rng: np.random.Generator) -> np.ndarray:
    """The camera frame as uint8 ``[3, H, W]``.

    Args:
        vehicles: on this approach's lanes (see :data:`Vehicle`); those beyond the view are clipped.
        widths_m: the approach's lane widths, lane 0 (rightmost) first.
        brightness: scene light, 1.0 at noon; dusk towards 0.4.
        rng: sensor noise (seeded by the caller: a run is reproducible).
    """
    img = road(widths_m).copy()
    cols = lane_columns(widths_m)
    for lane, front_m, length_m, speed, vid in vehicles:
        if lane >= len(cols) or front_m > VIEW_M:
            continue
        blur_m = speed * EXPOSURE_S
        first, end = cols[lane]
        body = 3 if end - first >= 4 else 2  # a car is about 1.8-2.5 m wide
        col = first + (zlib.crc32(vid.encode()) >> 8) % (end - first - body + 1)  # where in its lane it drives
        top, bottom = front_m, front_m + length_m + blur_m  # front nearest the stop line, the blur behind
        r0, r1 = int(max(top, 0.0) / M_PER_PX), int(min(bottom, VIEW_M) / M_PER_PX + 0.5)
        if r1 <= r0:
            continue
        weight = length_m / (length_m + blur_m)  # a streak is fainter than a parked car
        patch = img[r0:r1, col : col + body]
        patch *= 1.0 - weight
        patch += weight * _colour(vid)
        if speed < 0.1:  # halted: brake lights at the rear
            rear = min(int((front_m + length_m) / M_PER_PX), H - 1)
            if rear >= r0:
                img[rear, col : col + body : body - 1] = (255, 30, 20)
    noise = rng.normal(0.0, 3.0 + 8.0 * (1.0 - brightness), size=img.shape).astype(np.float32)
    img = img * brightness + noise
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)
