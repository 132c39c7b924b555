"""One traffic camera's frame of its approach, rasterised with numpy from SUMO's vehicle positions.

The camera looks straight down the approach from above the stop line:

    frame: uint8 [3, 128, 32]  (channels, along the road, across it)
    rows:    0 = the stop line, 127 = 102 m upstream (0.8 m per pixel)
    columns: 0-6 kerb/verge | 7-14 two outgoing lanes | 15-16 median | 17-24 two incoming lanes | 25-31 verge

Why 128 x 32: the approaches are about 100 m long, so 0.8 m per pixel shows the whole
queue with a car 6 px long and the 2.5 m gap between queued cars 3 px wide, while a frame
stays 12 KiB: the raw upload a split plan is measured against. Moving vehicles are blurred
along the road (a 0.2 s exposure) and halted ones show brake lights, as a real camera
would see them; the light dims over the run (dusk) and sensor noise rises as it does.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["H", "W", "M_PER_PX", "Vehicle", "render", "background"]

H, W = 128, 32
M_PER_PX = 0.8
EXPOSURE_S = 0.2
LANE_PX = 4
IN_LANES = (21, 17)        # first column of incoming lane 0 (rightmost) and lane 1
OUT_LANES = (7, 11)        # first column of outgoing lane 0 (screen left: the driver's right) and lane 1
_PALETTE = np.array([[200, 200, 205], [30, 30, 35], [160, 20, 25], [20, 60, 150], [230, 230, 235],
                     [90, 95, 100], [200, 160, 30], [40, 110, 60], [120, 60, 30], [140, 170, 200]], dtype=np.float32)

# (incoming: bool, lane index, distance of the front from the stop line / junction in m, length m, speed m/s, id)
Vehicle = tuple[bool, int, float, float, float, str]


def background() -> np.ndarray:
    """The empty road, float32 [H, W, 3] in 0..255."""
    img = np.empty((H, W, 3), dtype=np.float32)
    img[:] = (88, 112, 74)                                    # verge
    img[:, 5:7] = (150, 150, 145)                             # kerbs
    img[:, 25:27] = (150, 150, 145)
    img[:, 7:25] = (62, 62, 66)                               # asphalt
    dashes = (np.arange(H) // 4) % 2 == 0                     # 3.2 m dashes
    img[dashes, 11] = (190, 190, 185)
    img[dashes, 20] = (190, 190, 185)
    img[:, 15:17] = (200, 170, 40)                            # median: double yellow
    img[0:2, 17:25] = (235, 235, 230)                         # stop line
    return img


_BACKGROUND = background()


def _colour(vid: str) -> np.ndarray:
    return _PALETTE[zlib.crc32(vid.encode()) % len(_PALETTE)]


def render(vehicles: list[Vehicle], brightness: float, rng: np.random.Generator) -> np.ndarray:
    """The camera frame as uint8 ``[3, H, W]``.

    Args:
        vehicles: on this approach's incoming and outgoing lanes (see :data:`Vehicle`).
        brightness: scene light, 1.0 at noon; dusk towards 0.4.
        rng: sensor noise (seeded by the caller: a run is reproducible).
    """
    img = _BACKGROUND.copy()
    for incoming, lane, front_m, length_m, speed, vid in vehicles:
        if lane > 1:
            continue
        blur_m = speed * EXPOSURE_S
        colour = _colour(vid)
        jitter = zlib.crc32(vid.encode()) >> 8 & 1            # where in its lane a car drives
        col = (IN_LANES if incoming else OUT_LANES)[lane] + jitter
        if incoming:            # moving up the frame: front nearest the stop line, the blur trails behind
            top, bottom = front_m, front_m + length_m + blur_m
        else:                   # leaving the junction: moving down the frame
            top, bottom = front_m - length_m - blur_m, front_m
        r0, r1 = int(max(top, 0.0) / M_PER_PX), int(min(bottom, H * M_PER_PX) / M_PER_PX + 0.5)
        if r1 <= r0:
            continue
        weight = length_m / (length_m + blur_m)               # a streak is fainter than a parked car
        patch = img[r0:r1, col:col + 3]
        patch *= 1.0 - weight
        patch += weight * colour
        if speed < 0.1 and incoming:                          # halted: brake lights at the rear
            rear = min(int((front_m + length_m) / M_PER_PX), H - 1)
            if rear >= r0:
                img[rear, col:col + 3:2] = (255, 30, 20)
    noise = rng.normal(0.0, 3.0 + 8.0 * (1.0 - brightness), size=img.shape).astype(np.float32)
    img = img * brightness + noise
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1)
