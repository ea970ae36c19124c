"""Figures read from a result document the same way everywhere (table, report, trends, regressions).

Per-inference energy: the host's On-Device Power Monitor figure (``host.energy_odpm``, measured
around the app's window on phones that have the rails) wins over the app's own (battery or
simulated), and the method travels with the number so no figure is shown without it.
"""

from __future__ import annotations

from typing import Any


def energy_per_inference(doc: dict[str, Any]) -> tuple[float | None, str]:
    """(millijoules per inference or None, method: odpm | battery | simulated | none)."""
    host = doc.get("host") or {}
    odpm = host.get("energy_odpm") or {}
    if odpm.get("per_inference_mj") is not None:
        return float(odpm["per_inference_mj"]), "odpm"
    energy = doc.get("energy") or {}
    value = energy.get("per_inference_mj")
    return (float(value) if value is not None else None), str(energy.get("method") or "none")
