"""What an operator sees: request metrics, runtime gauges and the per-request log line."""
