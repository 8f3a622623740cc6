"""Metrics: one set of gate measurements, exposed for Prometheus (`/metrics`) and sent to statsd."""
