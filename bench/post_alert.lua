-- POST /v2/alerts as Alertmanager does, with the integration key in TOCSIN_KEY.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "GenieKey " .. os.getenv("TOCSIN_KEY")
wrk.body = '{"message":"[FIRING:1] HighLatency api","description":"p99 > 2s","tags":["prod","api"],"priority":"P2","source":"bench","details":{"cluster":"eu-1"}}'
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
