-- wrk script: POST /api/flow_runs/filter with 200 ids (the tracking read).
--   wrk -t2 -c64 -d5s -s wrk/filter.lua http://127.0.0.1:PORT/api/flow_runs/filter
local ids = {}
for i = 1, 200 do
  ids[i] = string.format('"00000000-0000-4000-8000-%012d"', i)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"flow_runs":{"id":{"any_":[' .. table.concat(ids, ",") .. ']}},"limit":200,"offset":0,"sort":"ID_DESC"}'
