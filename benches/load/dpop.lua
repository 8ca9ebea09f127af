-- wrk script: every request carries the next line of a file (args[1], made ahead of the run by
-- benches/load.sh with examples/dpop_proofs.rs): a DPoP-bound token and a fresh proof made
-- with its key, "TOKEN PROOF". A proof is
-- good for one request, so they are never cycled: the warm-up and the measured run each start
-- after the last proof a previous run of this file used (kept in FILE.used), and a run that
-- exhausts the file says so (its requests then reuse proofs and are refused: errors).
--
--   wrk -t1 -c64 -d5s -s dpop.lua http://127.0.0.1:PORT/dpop/x -- proofs.txt

-- Globals (not locals) where done() reads them from the thread with thread:get.
local proofs = {}
local auths = {}
n, i, proofs_file = 0, 0, nil
local first = 0
local threads = {}

local function used_file(file) return file .. ".used" end

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local file = args[1] or error("usage: -- PROOFS_FILE")
   for line in io.lines(file) do
      if #line > 0 then
         local token, proof = line:match("^(%S+) (%S+)$")
         if not token then error(file .. ": not a \"TOKEN PROOF\" line: " .. line:sub(1, 40)) end
         n = n + 1
         proofs[n] = proof
         auths[n] = "DPoP " .. token
      end
   end
   if n == 0 then error("no proofs in " .. file) end
   local f = io.open(used_file(file), "r")
   if f then first = tonumber(f:read("*l")) or 0; f:close() end
   i = first
   proofs_file = file
end

function request()
   i = i + 1
   -- Past the end: the last proof again (refused as a replay, counted as an error).
   local j = i <= n and i or n
   return wrk.format(nil, nil, { ["Authorization"] = auths[j], ["DPoP"] = proofs[j] })
end

function done(summary, latency, requests)
   for _, t in ipairs(threads) do
      local used, file, total = t:get("i"), t:get("proofs_file"), t:get("n")
      local f = io.open(used_file(file), "w")
      f:write(tostring(used), "\n")
      f:close()
      if used > total then
         io.stderr:write(string.format("dpop.lua: %d requests, %d proofs: raise DPOP_PROOFS\n", used, total))
      end
   end
end
