-- wrk script: every request carries the next bearer token from a file (one per line),
-- round robin. Requests are formatted once in init(), so the per-request Lua cost is an
-- index and a table read; the same script against the upstream directly measures the load
-- generator's own ceiling in this mode.
--
--   wrk -t1 -c64 -d10s -s tokens.lua http://127.0.0.1:PORT/api/x -- tokens.txt

local requests = {}
local n, i = 0, 0

function init(args)
   local file = args[1] or error("usage: -- TOKENS_FILE")
   for line in io.lines(file) do
      if #line > 0 then
         n = n + 1
         requests[n] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
      end
   end
   if n == 0 then error("no tokens in " .. file) end
end

function request()
   i = i % n + 1
   return requests[i]
end
