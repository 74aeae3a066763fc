-- wrk script: POST the request bodies of a file in turn, one JSON body per line.
--
--   wrk -s benchmarks/post_bodies.lua http://127.0.0.1:8000/test/news/predict -- bodies.jsonl [API_KEY]
--
-- Every request is formatted once in init(), so wrk spends no Lua time per request beyond
-- picking the next one. Each wrk thread cycles through the whole file from its own start.
--
-- With WRK_DELAY_MS set, each connection waits that many milliseconds after an answer before
-- its next request: a paced load (benchmarks/test_soak.py holds a share of capacity with it).

local requests = {}
local count = 0
local position = 0

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s post_bodies.lua URL -- BODIES_FILE [API_KEY]")
  end
  local headers = { ["Content-Type"] = "application/json" }
  if args[2] ~= nil then
    headers["x-api-key"] = args[2]
  end
  for line in io.lines(path) do
    if #line > 0 then
      count = count + 1
      requests[count] = wrk.format("POST", nil, headers, line)
    end
  end
  if count == 0 then
    error("no request bodies in " .. path)
  end
end

function request()
  position = position % count + 1
  return requests[position]
end

local pause = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pause ~= nil and pause > 0 then
  function delay()
    return pause
  end
end
