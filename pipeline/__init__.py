"""Anomaly detection for regular time series stored in InfluxDB 1.x.

The public API is re-exported here; implementations live in modules named
after the data they handle (``influx``, ``series``, ``segment``, ``kmeans``,
``threshold``, ``zscore``, ``model_io``, ``stream``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
