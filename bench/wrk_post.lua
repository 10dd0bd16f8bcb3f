-- POST the body in $BENCH_BODY with the headers in $BENCH_HEADERS ("Name: value" lines).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\n]+): ([^\n]*)") do
  wrk.headers[name] = value
end

-- summary.errors.status counts non-2xx/3xx answers, so a failing target cannot pass for a fast one.
done = function(summary, latency, requests)
  io.write(string.format("BENCH_NON2XX %d\n", summary.errors.status))
  io.write(string.format("BENCH_P50_US %d\n", latency:percentile(50)))
  io.write(string.format("BENCH_P90_US %d\n", latency:percentile(90)))
  io.write(string.format("BENCH_P99_US %d\n", latency:percentile(99)))
  io.write(string.format("BENCH_REQUESTS %d\n", summary.requests))
  io.write(string.format("BENCH_DURATION_US %d\n", summary.duration))
end
