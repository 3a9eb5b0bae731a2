"""System metrics (CPU, memory, disk, network, GPU where present) of a run, with MLflow's monitor.

MLflow samples them with ``psutil`` and ``pynvml`` in a background thread and
logs them as ``system/...`` metrics, which the UI shows in the run's "System
metrics" tab. ``train`` and ``tune`` start one per run unless
``tracking.system_metrics`` is false.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def start_system_metrics(tracker, tracking_config):
    """Start sampling for the tracker's run; the monitor, or None when off or unavailable.

    Args:
        tracker: a :class:`~kerasflow.tracking.RunTracker` (disabled: nothing starts).
        tracking_config: the ``tracking:`` section (``system_metrics``,
            ``system_metrics_interval_s``).
    """
    if not tracker.enabled or not tracking_config.system_metrics:
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            tracker.run_id,
            sampling_interval=tracking_config.system_metrics_interval_s,
            resume_logging=tracker.resumed,
            tracking_uri=tracker.uri,
        )
        monitor.start()
    except Exception as exc:  # noqa: BLE001 - metrics about the run must never stop the run
        log.warning("system metrics are off for this run: %s", exc)
        return None
    return monitor


def stop_system_metrics(monitor) -> None:
    """Stop a monitor from :func:`start_system_metrics` (None is fine); logs what it holds."""
    if monitor is None:
        return
    try:
        monitor.finish()
    except Exception as exc:  # noqa: BLE001 - see start_system_metrics
        log.warning("could not stop the system metrics monitor: %s", exc)
