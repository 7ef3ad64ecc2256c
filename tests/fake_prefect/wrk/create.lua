-- wrk script: POST a create_flow_run body with a fresh idempotency key per request.
--   wrk -t2 -c64 -d5s -s wrk/create.lua \
--     http://127.0.0.1:PORT/api/deployments/00000000-0000-4000-8000-000000000001/create_flow_run
local counter = 0
local tid = math.random(1, 1e9)
request = function()
  counter = counter + 1
  local body = '{"parameters":{"x":' .. counter .. ',"name":"item"},"tags":["bench"],' ..
    '"idempotency_key":"floodgate:' .. tid .. ':' .. counter .. '"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
