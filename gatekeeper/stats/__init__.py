"""Statistics over build history that several services show: provider failure-rate outliers and the gate's ETA."""
