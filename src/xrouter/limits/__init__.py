"""Rate limits and quotas: which limits apply to a request, the GCRA algorithm, the in-process
and Redis backends, the failure policy, response headers, metrics and quota webhooks."""
