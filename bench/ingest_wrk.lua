-- wrk script for bench_ingest: every request is a new, signed, application-sized Knit event.
-- Args after `--`: <secret> <parts file>. The parts file returns {before_id, between_ids, after_id}
-- (made by bench_ingest.py); each request fills in a unique event id and record id and signs the
-- body with HMAC-SHA256 (OpenSSL through LuaJIT's FFI), base64url without padding, like Knit.
local ffi = require("ffi")
ffi.cdef [[
unsigned char *HMAC(const void *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
const void *EVP_sha256(void);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local md = ffi.new("unsigned char[32]")
local mdlen = ffi.new("unsigned int[1]")
local secret, parts, prefix
status_ok, status_other = 0, 0  -- globals: done() reads them with thread:get

local function b64url(bytes, n)
  local out = {}
  local i = 0
  while i < n do
    local a, b, c = bytes[i], (i + 1 < n) and bytes[i + 1] or 0, (i + 2 < n) and bytes[i + 2] or 0
    local v = a * 65536 + b * 256 + c
    out[#out + 1] = alphabet:sub(math.floor(v / 262144) % 64 + 1, math.floor(v / 262144) % 64 + 1)
    out[#out + 1] = alphabet:sub(math.floor(v / 4096) % 64 + 1, math.floor(v / 4096) % 64 + 1)
    if i + 1 < n then out[#out + 1] = alphabet:sub(math.floor(v / 64) % 64 + 1, math.floor(v / 64) % 64 + 1) end
    if i + 2 < n then out[#out + 1] = alphabet:sub(v % 64 + 1, v % 64 + 1) end
    i = i + 3
  end
  return table.concat(out)
end

function init(args)
  secret = args[1]
  parts = dofile(args[2])
  prefix = string.format("%s-%d-", args[3] or "ev", tid)
  status_ok, status_other = 0, 0
end

function request()
  counter = counter + 1
  local id = prefix .. counter
  local body = parts[1] .. id .. parts[2] .. id .. parts[3]
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, md, mdlen)
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Knit-Signature"] = b64url(md, 32),
    ["X-Knit-Integration-Id"] = "bench-integration",
  }
  return wrk.format("POST", nil, headers, body)  -- nil: the path of the URL given to wrk
end

function response(status, headers, body)
  if status == 200 then status_ok = status_ok + 1 else status_other = status_other + 1 end
end

function done(summary, latency, requests)
  local ok_total, other_total = 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("status_ok")
    other_total = other_total + thread:get("status_other")
  end
  io.write(string.format(
    '{"requests": %d, "ok": %d, "not_ok": %d, "socket_errors": %d, "duration_us": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, ok_total, other_total,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
