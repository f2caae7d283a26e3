-- GET /v1/auth/whoami with the key in TOCSIN_KEY: the authentication hot path.
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOCSIN_KEY")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
