-- wrk script for bench_ingest: every request is a new, signed, application-sized Knit event.
-- Args after `--`: <secret> <parts file> <id prefix>. The parts file returns {before_id, between_ids,
-- after_id} (made by ingest_load.py); each request fills in a unique event id and record id
-- (<prefix>-<thread>-<n>, n = 1, 2, ...: done() prints each thread's last n as "sent"; wrk calls
-- request() once on thread 1 to check the script, so id <prefix>-1-1 is built but never sent) and
-- signs the body with HMAC-SHA256 and base64url without padding, like Knit, both through OpenSSL
-- (LuaJIT's FFI). The generator shares the receiver's cores, so it does as little as it can: no
-- response() callback (wrk would then hand every response to Lua); wrk counts answers of 400 and
-- above itself (errors.status), and the receiver answers nothing but 200 below that.
local ffi = require("ffi")
ffi.cdef [[
unsigned char *HMAC(const void *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
const void *EVP_sha256(void);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end

local threads = {}
-- Global, not local: done() reads each thread's count with thread:get, so the benchmark knows every id sent.
counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local md = ffi.new("unsigned char[32]")
local mdlen = ffi.new("unsigned int[1]")
local b64 = ffi.new("unsigned char[48]")
local PLUS, SLASH, DASH, UNDERSCORE = string.byte("+"), string.byte("/"), string.byte("-"), string.byte("_")
local secret, parts, prefix, sha256

local function signature(body)
  crypto.HMAC(sha256, secret, #secret, body, #body, md, mdlen)
  crypto.EVP_EncodeBlock(b64, md, 32)  -- 44 characters, the last one "=" padding
  for i = 0, 42 do
    local c = b64[i]
    if c == PLUS then b64[i] = DASH elseif c == SLASH then b64[i] = UNDERSCORE end
  end
  return ffi.string(b64, 43)
end

function init(args)
  secret = args[1]
  parts = dofile(args[2])
  prefix = string.format("%s-%d-", args[3] or "ev", tid)
  sha256 = crypto.EVP_sha256()
end

function request()
  counter = counter + 1
  local id = prefix .. counter
  local body = parts[1] .. id .. parts[2] .. id .. parts[3]
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Knit-Signature"] = signature(body),
    ["X-Knit-Integration-Id"] = "bench-integration",
  }
  return wrk.format("POST", nil, headers, body)  -- nil: the path of the URL given to wrk
end

function done(summary, latency, requests)
  local errors = summary.errors
  local sent = {}
  for i, thread in ipairs(threads) do sent[i] = tostring(thread:get("counter")) end
  io.write(string.format(
    '{"requests": %d, "ok": %d, "not_ok": %d, "socket_errors": %d, "duration_us": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "sent": [%s]}\n',
    summary.requests, summary.requests - errors.status, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(sent, ", ")))
end
