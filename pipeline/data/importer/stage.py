"""Convert one recording (a Dask task): stream its messages once, stage schema rows on disk.

The messages are converted in one pass, or in time slices in parallel joined in order
(:mod:`pipeline.data.importer.convert`, :mod:`pipeline.data.importer.slices`): camera and
LIDAR rows are staged in files as they are converted; IMU and odometry values and every
stamp stay in memory, in arrival order.  Then each stream is sorted by stamp
(out-of-order messages counted), exact duplicates (same stamp, same converted row) dropped
and counted, a second message with the same stamp but other data rejected, and a stamp
further back than ``import.max_reorder_s`` is a ``clock-backwards`` error.  Then the IMU is
rotated into the body frame and resampled, and targets are put on the model clock
(:mod:`pipeline.data.importer.resample`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.config import ImportConfig
from pipeline.data.importer import messages as mm
from pipeline.data.importer.discover import BagPlan
from pipeline.data.importer.mounting import lidar_setup
from pipeline.data.importer.resample import imu_to_rate, rates_hz, targets_on_clock
from pipeline.data.importer.slices import convert_bag
from pipeline.data.importer.source import BagError
from pipeline.data.schema import NS


def stage_recording(plan: BagPlan, icfg: ImportConfig, out_dir: str, max_range: float | None,
                    model_rate_hz: float, processes: int = 1, meanwhile=None) -> list[dict]:
    """Convert ``plan``'s bag into ``out_dir``; returns, per recording (one, or one per part
    split at ``import.split_gap_s``), what the assembly needs and its report, or
    ``[{"error": BagError}]`` (a bad bag never stops the others).  ``processes``, ``meanwhile``:
    :func:`pipeline.data.importer.slices.convert_bag`."""
    try:
        return _stage(plan, icfg, Path(out_dir), max_range, model_rate_hz, processes, meanwhile)
    except BagError as exc:
        return [{"name": plan.source.name, "error": exc}]
    except Exception as exc:  # noqa: BLE001  (named and reported: one bad bag never stops the others)
        return [{"name": plan.source.name, "error": BagError(
            "conversion-failed", plan.source.name, f"{type(exc).__name__}: {exc} (please report: a message "
            "this importer does not handle)")}]


def _stage(plan, icfg: ImportConfig, out: Path, max_range, model_rate_hz, processes: int, meanwhile) -> dict:
    name, topics = plan.source.name, plan.topics
    out.mkdir(parents=True, exist_ok=True)
    H, W, B = icfg.camera_height, icfg.camera_width, icfg.lidar_beams
    p = {k: getattr(icfg, k) for k in ("camera_height", "camera_width", "lidar_beams", "clock", "cloud_z_min_m",
                                       "cloud_z_max_m", "cloud_max_range_m")}
    mount = lidar_setup(plan.source, topics, icfg.base_frame, icfg.lidar_yaw_deg,
                        float(max_range) if max_range is not None else None, icfg.cloud_max_range_m)
    p["lidar_yaw_rad"] = mount["yaw_rad"]
    c, lid_max = convert_bag(plan.source, topics, p, out, mount["max_range"], processes, meanwhile)
    cam, lid, imu, odo = c.cam, c.lid, c.imu, c.odo
    img_seen, scan_seen, covered, tf, fx, imu_frame = c.img_seen, c.scan_seen, c.covered, c.tf, c.fx, c.imu_frame
    max_back = int(icfg.max_reorder_s * NS)
    cam_rows, lid_rows = cam.rows(np.uint8, (H, W)), lid.rows(np.float32, (B,))
    t_cam, i_cam = cam.finish(name, cam_rows, max_back)
    t_lid, i_lid = lid.finish(name, lid_rows, max_back)
    t_imu, i_imu = imu.finish(name, imu.rows(None, None), max_back)
    for s, t in ((cam, t_cam), (lid, t_lid), (imu, t_imu)):
        if t.size == 0:
            raise BagError("no-messages", name, f"topic {s.topic!r}: none of its {s.read} message(s) could be "
                           f"converted (rejected: {dict(s.rejected) or 'none'})")
    key = (icfg.base_frame, imu_frame or "")
    if key[1] == key[0]:
        R, r_src = np.eye(3), f"identity: the IMU's frame_id is import.base_frame ({key[0]})"
    elif key in tf:
        R, r_src = mm.quaternion_matrix(*tf[key]), f"{topics['tf_static'][0]}: {key[0]} -> {key[1]}"
    else:
        R, r_src = mm.rotation(icfg.imu_rotation_rpy_deg), f"import.imu_rotation_rpy_deg {list(icfg.imu_rotation_rpy_deg)}"
    imu_raw = imu.rows(None, None)[i_imu]
    imu_body = imu_raw if np.array_equal(R, np.eye(3)) else np.concatenate(
        [imu_raw[:, :3] @ R.T, imu_raw[:, 3:] @ R.T], axis=1)
    odo_t = odo_v = None
    if odo is not None:
        odo_t, i_odo = odo.finish(name, odo.rows(None, None), max_back)
        odo_v = odo.rows(None, None)[i_odo]
    fov = None
    if fx is not None:  # the crop's horizontal field of view
        (ih, iw) = next(iter(img_seen))[1] if img_seen else (0, fx[1])
        y0, y1, x0, x1 = mm.crop_box(ih, iw, H, W)
        fov = 2 * math.atan((x1 - x0) / 2 / fx[0])
    report = {
        "name": name, "kind": plan.source.kind, "files": list(plan.source.paths), "clock": icfg.clock,
        "camera": {**cam.counts(), "images": [{"encoding": e, "size_hw": list(sh), "messages": n,
                                               "crop_yyxx": list(mm.crop_box(*sh, H, W))}
                                              for (e, sh), n in sorted(img_seen.items())],
                   "fov_rad": fov, "fov_source": f"{topics['camera_info'][0]} K[0]" if fov else "import.camera_fov_deg"},
        "lidar": {**lid.counts(), "geometries": [{"geometry": list(k), "messages": n} for k, n in scan_seen.items()],
                  "covered_beams": int(covered.sum()), "max_range_m": lid_max, "frame_id": mount["frame_id"],
                  "yaw_rad": round(mount["yaw_rad"], 12), "yaw_source": mount["yaw_source"]},
        "imu": {**imu.counts(), "frame_id": imu_frame, "rotation": R.round(9).tolist(), "rotation_source": r_src},
        "odometry": odo.counts() if odo is not None else None,
    }
    gap = None if icfg.split_gap_s is None else int(icfg.split_gap_s * NS)
    bounds = _segments([t_cam, t_lid, t_imu], gap)
    out_list = []
    for j, (lo, hi) in enumerate(bounds):
        def cut(t, lo=lo, hi=hi):
            return slice(int(np.searchsorted(t, lo, "left")), int(np.searchsorted(t, hi, "right")))

        c, li, im = cut(t_cam), cut(t_lid), cut(t_imu)
        end = hi  # a part ends at its last sensor message; a whole bag at its last message of any stream
        od = None
        if odo_t is not None:  # a part's odometry runs until the next part starts
            od = cut(odo_t, lo if j else np.iinfo(np.int64).min,
                     bounds[j + 1][0] - 1 if j + 1 < len(bounds) else np.iinfo(np.int64).max)
            if len(bounds) == 1 and odo_t.size:
                end = max(end, int(odo_t[-1]))
        seg = f"{name}#{j}" if len(bounds) > 1 else name
        seg_dir = out / f"s{j:04d}"
        seg_dir.mkdir()
        rep = {**report, "name": seg, "segment": [j, len(bounds)] if len(bounds) > 1 else None}
        out_list.append(_recording(seg, seg_dir, out, rep, icfg, model_rate_hz, t_cam[c], i_cam[c], t_lid[li],
                                   i_lid[li], lid_rows, t_imu[im], imu_body[im],
                                   None if od is None else odo_t[od], None if od is None else odo_v[od],
                                   covered, fov, lid_max, end))
    return out_list


def _segments(stamps: list[np.ndarray], gap_ns: int | None) -> list[tuple[int, int]]:
    """(first, last) stamp of each part of a recording: split where no sensor message
    arrives for more than ``gap_ns`` (``import.split_gap_s``; None: one part)."""
    t = np.sort(np.concatenate(stamps))
    if gap_ns is None or t.size < 2:
        return [(int(t[0]), int(t[-1]))]
    cut = np.flatnonzero(np.diff(t) > gap_ns)
    return [(int(t[a]), int(t[b])) for a, b in zip(np.r_[0, cut + 1], np.r_[cut, t.size - 1], strict=True)]


def _recording(name, out: Path, bins: Path, report: dict, icfg: ImportConfig, model_rate_hz, t_cam, i_cam, t_lid,
               i_lid, lid_rows, t_imu, imu_body, odo_t, odo_v, covered, fov, lid_max, end_ns: int) -> dict:
    """One recording's model clock, IMU at the store's rate and targets, saved under ``out``."""
    t_start = int(min(t[0] for t in (t_cam, t_lid, t_imu) if t.size))
    t_imu_out, imu_out, imu_how = imu_to_rate(t_imu, imu_body, t_start, icfg.imu_rate_hz, icfg.imu_keep_tolerance)
    step_ns = int(round(NS / model_rate_hz))
    n_steps = int((int(end_ns) - t_start) // step_ns)
    targets, tinfo = targets_on_clock(t_start, step_ns, n_steps, odo_t, odo_v, t_lid, lid_rows, i_lid, covered,
                                      icfg.ahead_half_angle_deg, icfg.ahead_distance_m)
    for arr, fname in ((t_cam, "t_cam"), (i_cam, "i_cam"), (t_lid, "t_lidar"), (i_lid, "i_lid"),
                       (t_imu_out, "t_imu"), (imu_out.astype(np.float32), "imu")):
        np.save(out / f"{fname}.npy", arr)
    if targets is not None:
        np.save(out / "targets.npy", targets)
    report = {**report, "imu": {**report["imu"], "resampling": imu_how, "samples_out": int(t_imu_out.size)},
              "targets": tinfo, "t_start": t_start, "n_steps": n_steps}
    return {"name": name, "dir": str(out), "bins": str(bins), "t_start": t_start, "n_steps": n_steps,
            "n_frames": int(t_cam.size), "n_scans": int(t_lid.size), "n_samples": int(t_imu_out.size),
            "covered": covered, "fov": fov, "max_range": lid_max, "rates": rates_hz(t_cam, t_lid, t_imu),
            "targets": targets is not None, "report": report}
