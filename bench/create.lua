-- wrk script: POST /v2/phone-validations with a fresh phone per request.
-- Needs TOKEN, PROJECT and FLOW in the environment (bench/create.sh sets them).
local token = os.getenv("TOKEN")
local project = os.getenv("PROJECT")
local flow = os.getenv("FLOW")
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  counter = 0
end

function request()
  counter = counter + 1
  local phone = string.format("6%d%06d", tid % 10, counter % 1000000)
  local body = string.format(
    '{"project":"%s","projectFlow":"%s","countryCode":"+507","phone":"%s","validationMethod":"verificationCode","type":"login"}',
    project, flow, phone)
  return wrk.format("POST", "/v2/phone-validations",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end
