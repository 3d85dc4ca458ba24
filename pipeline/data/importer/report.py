"""The import's summary table: per recording and modality, what was read, re-sorted, dropped,
rejected (and why) and kept; then the recordings skipped under quarantine."""

from __future__ import annotations

MODS = ("camera", "lidar", "imu", "odometry")
_COLS = ("read", "reordered", "duplicates", "rejected", "stamp_fallback", "kept")


def summary_table(reports: list[dict], quarantined: list[dict], skipped_files: list[str]) -> str:
    """A plain-text table, one row per (recording, modality), and the reasons below it."""
    head = f"{'recording':<24} {'modality':<9} " + " ".join(f"{c:>14}" for c in _COLS)
    lines, why = [head, "-" * len(head)], []
    for rep in reports:
        for mod in MODS:
            c = rep.get(mod)
            if not c:
                continue
            rejected = sum(c["rejected"].values())
            vals = [c["read"], c.get("reordered", 0), c.get("duplicates", 0), rejected, c["stamp_fallback"],
                    c.get("kept", 0)]
            lines.append(f"{rep['name'][:24]:<24} {mod:<9} " + " ".join(f"{v:>14}" for v in vals))
            why += [f"  {rep['name']} {mod}: {n} rejected: {reason}" for reason, n in c["rejected"].items()]
        imu = rep["imu"]
        why.append(f"  {rep['name']} imu: {imu['resampling']}; rotation from {imu['rotation_source']}")
        t = rep["targets"]
        if "steps_held_outside_odometry" in t:
            why.append(f"  {rep['name']} targets: {t['steps']} steps, {t['steps_held_outside_odometry']} held outside "
                       f"the odometry, {t['obstacle_steps_before_first_scan']} before the first scan")
        else:
            why.append(f"  {rep['name']} targets: {t['source']}")
    lines += why
    if quarantined:
        lines.append(f"quarantined {len(quarantined)} recording(s) (data.policy=quarantine):")
        lines += [f"  - {q['name']}: {q['error']}" for q in quarantined]
    if skipped_files:
        lines.append(f"not bags, skipped: {', '.join(skipped_files)}")
    return "\n".join(lines)
