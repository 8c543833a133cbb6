-- wrk script for tests/bench/bootstrap-wrk.
--
--   wrk ... -s bootstrap-wrk.lua URL -- device    the field SDK's POST /auth/bootstrap,
--                                                 cycling over bench-0000..bench-0999
--   wrk ... -s bootstrap-wrk.lua URL -- region    GET /auth/bootstrap/regionId/eu-central-1
--   wrk ... -s bootstrap-wrk.lua URL -- moved     the device request, for moved-0000..moved-0999
--   wrk ... -s bootstrap-wrk.lua URL -- nearest ADDR,ADDR,...
--                                                 the device request, for near-0000..near-0999,
--                                                 each with X-Forwarded-For: one of the
--                                                 addresses (near-i always the same: i mod n)
--   wrk ... -s bootstrap-wrk.lua URL -- MODE ADDRS close
--                                                 the same with "Connection: close": the
--                                                 server closes after each answer and wrk
--                                                 connects again, a connection per request
--
-- Every request is formatted once in init(); request() only picks the next
-- one, so the load generator costs the same whichever server it talks to.
-- done() prints one line starting with "wrk-result" that the shell script parses.

local DEVICES = 1000
local PRODUCT = "a1BenchPK"

local counter = 0

function setup(thread)
	thread:set("tid", counter)
	counter = counter + 1
end

local reqs = {}
local n = 0
local close = false

local function device_requests(prefix, addresses)
	for i = 0, DEVICES - 1 do
		local name = string.format("%s-%04d", prefix, i)
		local body = string.format("productKey=%s&deviceName=%s&clientId=%s.%s&resources=mqtt",
			PRODUCT, name, PRODUCT, name)
		local headers = {
			["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8",
			["Accept"] = "text/xml,text/javascript,text/html,application/json",
		}
		if close then
			headers["Connection"] = "close"
		end
		if addresses then
			-- A device keeps its address: one that moved between requests
			-- would have its bootstrap recorded again at every move.
			headers["X-Forwarded-For"] = addresses[i % #addresses + 1]
		end
		reqs[#reqs + 1] = wrk.format("POST", "/auth/bootstrap", headers, body)
	end
end

function init(args)
	local mode = args[1] or "device"
	for i = 3, #args do
		if args[i] == "close" then
			close = true
		else
			error("bootstrap-wrk.lua: unknown option " .. args[i])
		end
	end
	if mode == "region" then
		local headers = { ["Accept"] = "text/xml,text/javascript,text/html,application/json" }
		if close then
			headers["Connection"] = "close"
		end
		reqs[1] = wrk.format("GET", "/auth/bootstrap/regionId/eu-central-1", headers)
	elseif mode == "device" then
		device_requests("bench")
	elseif mode == "moved" then
		device_requests("moved")
	elseif mode == "nearest" then
		local addresses = {}
		for a in string.gmatch(args[2] or "", "[^,]+") do
			addresses[#addresses + 1] = a
		end
		if #addresses == 0 then
			error("bootstrap-wrk.lua: nearest needs a comma-separated list of addresses")
		end
		device_requests("near", addresses)
	else
		error("bootstrap-wrk.lua: mode must be device, region, moved or nearest, got " .. mode)
	end
	-- Threads start at different devices.
	n = ((tid or 0) * 499) % #reqs
end

function request()
	n = n % #reqs + 1
	return reqs[n]
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"wrk-result requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d " ..
		"non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
		summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
		latency:percentile(50), latency:percentile(99), latency.max,
		e.status, e.connect, e.read, e.write, e.timeout))
end
