-- One machine-readable line at the end of a wrk run: requests/s, p99 (ms), errors (socket
-- errors and non-2xx/3xx answers, which wrk counts itself).
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("RESULT rps=%.1f p99_ms=%.3f errors=%d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000,
        e.connect + e.read + e.write + e.timeout + e.status))
end
