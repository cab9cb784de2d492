"""The run manifest (what ran, on what, with which result) and the short summary a person reads."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("forecaster", "torch", "ray", "pyarrow", "pandas", "numpy", "fsspec")


def versions() -> dict:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def build_manifest(config: dict, counts: dict, metrics: dict, timings: dict, checkpoint_uri: str | None,
                   outputs: dict) -> dict:
    return {
        "config": config,
        "versions": versions(),
        "counts": counts,
        "metrics": metrics,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "checkpoint_uri": checkpoint_uri,
        "outputs": outputs,
    }


def summary_lines(manifest: dict) -> list[str]:
    counts, metrics, outputs = manifest["counts"], manifest["metrics"], manifest["outputs"]
    lines = [
        f"series: {counts['input']} input, {counts['forecast']} forecast, {counts['rejected']} rejected",
    ]
    if counts.get("by_model"):
        lines.append("forecast by: " + ", ".join(f"{k}={v}" for k, v in sorted(counts["by_model"].items())))
    if counts.get("reject_reasons"):
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(counts["reject_reasons"].items()))
        lines.append(f"reject reasons: {reasons}")
    if metrics.get("val_mase_lstm") is not None:
        lines.append(
            "validation (last horizon of each series): "
            f"MASE LSTM {metrics['val_mase_lstm']:.3f} vs seasonal naive {metrics['val_mase_seasonal_naive']:.3f}; "
            f"sMAPE LSTM {metrics['val_smape_lstm']:.2f} vs seasonal naive {metrics['val_smape_seasonal_naive']:.2f}"
        )
    lines.append(f"forecasts: {outputs['forecasts']}")
    lines.append(f"rejects:   {outputs['rejects']}")
    lines.append(f"manifest:  {outputs['manifest']}")
    lines.append(f"wall time: {manifest['timings_s']['total']:.1f} s")
    return lines
