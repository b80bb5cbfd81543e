-- Each request a Pixazo callback for a new job id; with COPIES > 1 each id is sent COPIES times.
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  copies = tonumber(args[1] or "1")
  prefix = args[2] or "run"
end
function request()
  local n = math.floor(counter / copies)
  counter = counter + 1
  local body = string.format(
    '{"request_id":"topaz-upscale-video-753_%s-%d-%d","status":"PROCESSING","model_id":"topaz-upscale-video-753","error":null,"output":null,"created_at":"2026-05-22T13:17:32.110Z","updated_at":"2026-05-22 13:19:23"}',
    prefix, tid, n)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
