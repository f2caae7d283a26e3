-- GET /v1/auth/whoami, each request with a token picked at random from TOKENS_FILE (the keys
-- benchmark's 10,000 real tokens in a store of 1,000,000 keys): the cache fills as it would
-- under many clients, for the memory figure.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then tokens[#tokens + 1] = line end
end
request = function()
    return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] })
end
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
