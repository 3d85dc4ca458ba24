"""ROS sensor messages to schema rows, pure numpy (no ROS install, no reader state).

* Images (``sensor_msgs/Image`` mono8, mono16, rgb8, bgr8, rgba8, bgra8; ``CompressedImage``
  JPEG/PNG, decoded by Pillow) are centre-cropped to the target aspect ratio, area-averaged
  (output pixel = mean of the source area it covers, fractional edges weighted) and made
  grey uint8 (ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, linear, so averaging first
  costs nothing; mono16 keeps its high byte).  An image already at the target size passes
  through unchanged.
* Scans (``LaserScan``) go onto the schema's beam grid: beam ``b`` points ``b * 2 pi / B``
  rad counter-clockwise from straight ahead and owns the sector ``+- pi / B`` around it.
  Each beam takes the nearest return of the source beams in its sector; a sector inside
  the scan's span holding no source beam takes the nearest source beam by angle; beams
  outside the span are not covered.  Ranges outside [range_min, range_max] and NaN are
  no-return (``max_range``).  ``PointCloud2``: points within a height band, nearest per
  sector; a sector with no point is no-return (a 3-D LIDAR covers 360 degrees).
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np

CHANNELS = {"mono8": (1, np.uint8), "mono16": (1, np.dtype(">u2")), "rgb8": (3, np.uint8),
            "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8)}
_LUMA = np.array([0.299, 0.587, 0.114])


class MessageRejected(ValueError):  # noqa: N818  (a reason, not a failure: counted per modality)
    """This one message cannot be converted; the text says why (counted, never raised further)."""


def pixels(msg) -> tuple[np.ndarray, str]:
    """(h, w, channels) pixels (uint8; mono16 as its high byte) in RGB(A) order, or one
    grey channel, and the source encoding of an Image or CompressedImage."""
    if hasattr(msg, "format"):  # CompressedImage
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(np.asarray(msg.data, np.uint8).tobytes()))
            img.load()
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise MessageRejected(f"cannot decode CompressedImage ({msg.format!r}): {exc}") from None
        mode = img.mode
        if mode in ("I;16", "I;16B", "I"):
            return (np.asarray(img, np.uint32) >> 8).astype(np.uint8)[..., None], f"compressed {msg.format} {mode}"
        px = np.asarray(img if mode in ("L", "RGB") else img.convert("RGB"), np.uint8)
        return (px[..., None] if px.ndim == 2 else px), f"compressed {msg.format} {mode}"
    enc = str(msg.encoding).lower()
    if enc.startswith("bayer"):
        raise MessageRejected(f"Bayer encoding {msg.encoding!r} is not supported: debayer the images first")
    if enc not in CHANNELS:
        raise MessageRejected(f"image encoding {msg.encoding!r} is not supported (supported: {', '.join(CHANNELS)})")
    ch, dt = CHANNELS[enc]
    dt = np.dtype(dt)
    if enc == "mono16" and not msg.is_bigendian:
        dt = dt.newbyteorder("<")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.asarray(msg.data, np.uint8)
    if step < w * ch * dt.itemsize or raw.size < h * step:
        raise MessageRejected(f"image data too short: {raw.size} bytes for {h} x {w} {enc} (step {step})")
    rows = raw[: h * step].reshape(h, step)[:, : w * ch * dt.itemsize]
    if dt.itemsize > 1:
        return (rows.view(dt).reshape(h, w, 1) >> 8).astype(np.uint8), enc
    px = rows.reshape(h, w, ch)
    return (px[..., 2::-1] if enc.startswith("bgr") else px[..., :3] if ch == 4 else px), enc


def grey(msg) -> tuple[np.ndarray, str]:
    """(h, w) uint8 grey image (full size) and the source encoding."""
    px, enc = pixels(msg)
    return _luma(px), enc


def _luma(px: np.ndarray) -> np.ndarray:
    if px.shape[-1] == 1:
        return np.ascontiguousarray(px[..., 0]) if px.dtype == np.uint8 else \
            np.clip(np.rint(px[..., 0]), 0, 255).astype(np.uint8)
    return np.clip(np.rint(px[..., :3] @ _LUMA), 0, 255).astype(np.uint8)


def crop_box(h: int, w: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the largest centred crop of an h x w image with out_h : out_w aspect."""
    if w * out_h > h * out_w:  # too wide: crop columns
        cw = max(1, round(h * out_w / out_h))
        x0 = (w - cw) // 2
        return 0, h, x0, x0 + cw
    ch = max(1, round(w * out_h / out_w))
    y0 = (h - ch) // 2
    return y0, y0 + ch, 0, w


@functools.lru_cache(maxsize=64)
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: row i averages the input span [i, i + 1) * n_in / n_out."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Centre-crop ``img`` ((h, w) grey or (h, w, c) RGB uint8) to the target aspect,
    area-average each channel to (out_h, out_w), then take the luma: (out_h, out_w) uint8."""
    px = img[..., None] if img.ndim == 2 else img
    y0, y1, x0, x1 = crop_box(px.shape[0], px.shape[1], out_h, out_w)
    crop = px[y0:y1, x0:x1]
    h, w, c = crop.shape
    if (h, w) == (out_h, out_w):
        return _luma(crop)
    if h % out_h == 0 and w % out_w == 0:  # whole blocks: exact integer sums
        fy, fx = h // out_h, w // out_w
        small = block_sums(crop, fy, fx).astype(np.float32) / (fy * fx)
    else:
        rows = np.tensordot(_area_matrix(h, out_h), crop.astype(np.float32), axes=(1, 0))  # (out_h, w, c)
        small = np.tensordot(rows, _area_matrix(w, out_w), axes=(1, 1)).transpose(0, 2, 1)  # (out_h, out_w, c)
    return _luma(small)


def block_sums(px: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Exact integer sums of the ``fy x fx`` blocks of ``px`` ((h, w, c) uint8, h and w whole
    multiples): the rows of each block first, as contiguous vector adds, then the columns
    of the (h / fy) rows left, in the smallest integer type that cannot overflow (cheaper than ``np.add.reduceat``
    over the columns of the full image first)."""
    h, w, c = px.shape
    acc = np.uint16 if fy * fx * 255 <= np.iinfo(np.uint16).max else np.uint32
    rows = px.reshape(h // fy, fy, w * c).sum(axis=1, dtype=acc)  # (out_h, w * c); a view when rows are contiguous
    return np.add.reduceat(rows.reshape(h // fy, w, c), np.arange(0, w, fx), axis=1, dtype=acc)


@functools.lru_cache(maxsize=32)
def scan_map(n: int, angle_min: float, increment: float, beams: int):
    """How a scan geometry maps onto ``beams``: ``(order, starts, sector_beams, fill_src,
    fill_beams, covered)``; see :func:`resample_scan`.  Cached: one geometry per sensor."""
    ang = np.mod(angle_min + np.arange(n) * increment, 2 * math.pi)
    step = 2 * math.pi / beams
    sector = np.floor(ang / step + 0.5).astype(np.int64) % beams  # [b - 1/2, b + 1/2) steps
    order = np.argsort(sector, kind="stable")
    sector_beams, starts = np.unique(sector[order], return_index=True)
    span = abs(increment) * max(n - 1, 0)  # the scan's angular span, from its first beam
    centre = np.arange(beams) * step
    rel = np.mod((centre - angle_min) * (1 if increment >= 0 else -1), 2 * math.pi)  # along the scan
    pad = min(abs(increment), step) / 2
    inside = (rel <= span + pad) | (rel >= 2 * math.pi - pad) if n > 1 else np.zeros(beams, bool)
    covered = inside.copy()
    covered[sector_beams] = True
    empty = np.setdiff1d(np.flatnonzero(inside), sector_beams)
    fill_src = np.clip(np.rint(np.where(rel[empty] > span, 0, rel[empty]) / max(abs(increment), 1e-12)),
                       0, n - 1).astype(np.int64)
    return order, starts, sector_beams, fill_src, empty, covered


def resample_scan(ranges, range_min: float, range_max: float, angle_min: float, increment: float,
                  beams: int, max_range: float) -> tuple[np.ndarray, np.ndarray]:
    """``(beams,) float32`` ranges in m and ``(beams,) bool`` covered, from one LaserScan.

    No-return (NaN, out of [range_min, range_max], beyond ``max_range``) and uncovered
    beams hold ``max_range``."""
    r = np.asarray(ranges, np.float32)
    good = np.isfinite(r) & (r >= range_min) & (r <= range_max) & (r <= max_range)
    r = np.where(good, r, np.float32(max_range)).astype(np.float32)
    order, starts, sector_beams, fill_src, empty, covered = scan_map(r.size, float(angle_min), float(increment), beams)
    out = np.full(beams, max_range, np.float32)
    if r.size:
        out[sector_beams] = np.minimum.reduceat(r[order], starts)
        out[empty] = r[fill_src]
    return out, covered


_PF = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}  # PointField datatypes


def cloud_xyz(msg) -> np.ndarray:
    """(n, 3) float64 x, y, z of a PointCloud2's points (NaN points kept; caller drops them)."""
    fields = {f.name: f for f in msg.fields}
    missing = [k for k in "xyz" if k not in fields]
    if missing:
        raise MessageRejected(f"PointCloud2 has no field(s) {missing} (fields: {sorted(fields)})")
    endian = ">" if msg.is_bigendian else "<"
    dt = np.dtype({"names": list("xyz"), "formats": [endian + _PF[int(fields[k].datatype)] for k in "xyz"],
                   "offsets": [int(fields[k].offset) for k in "xyz"], "itemsize": int(msg.point_step)})
    n = int(msg.width) * int(msg.height)
    raw = np.asarray(msg.data, np.uint8)
    if int(msg.row_step) == int(msg.width) * int(msg.point_step):
        pts = raw[: n * dt.itemsize].view(dt)
    else:  # padded rows
        rows = raw[: int(msg.height) * int(msg.row_step)].reshape(int(msg.height), int(msg.row_step))
        pts = np.ascontiguousarray(rows[:, : int(msg.width) * dt.itemsize]).reshape(-1).view(dt)
    return np.stack([pts["x"], pts["y"], pts["z"]], axis=1).astype(np.float64)


def cloud_scan(xyz: np.ndarray, z_min: float, z_max: float, beams: int, max_range: float,
               yaw: float = 0.0) -> np.ndarray:
    """(beams,) float32: the nearest point per beam sector within the height band; no-return
    (``max_range``) where a sector holds none.  ``yaw``: the sensor's mounting yaw (rad), added
    to each point's bearing."""
    keep = np.isfinite(xyz).all(axis=1) & (xyz[:, 2] >= z_min) & (xyz[:, 2] <= z_max)
    x, y = xyz[keep, 0], xyz[keep, 1]
    r = np.hypot(x, y)
    near = r <= max_range
    sector = np.floor(np.mod(np.arctan2(y[near], x[near]) + yaw, 2 * math.pi) / (2 * math.pi / beams) + 0.5)
    sector = sector.astype(np.int64) % beams
    out = np.full(beams, np.inf)
    np.minimum.at(out, sector, r[near])
    return np.where(np.isfinite(out), out, max_range).astype(np.float32)


def rotation(rpy_deg) -> np.ndarray:
    """3 x 3 rotation from roll, pitch, yaw in degrees (ZYX: R = Rz(yaw) Ry(pitch) Rx(roll))."""
    r, p, y = np.deg2rad(np.asarray(rpy_deg, float))
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3 x 3 rotation of a unit quaternion (normalised first)."""
    q = np.array([x, y, z, w], float)
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
