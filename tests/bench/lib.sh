# Shared by the benchmark scripts in tests/bench/ (docs/performance.md): the
# binaries, a temporary folder and the clean-up, free loopback ports, the
# certificates, redis-server, bootstrapd and nginx configured to return the
# same bytes, the fixtures (product, devices, batches) and the measurements.
# Sourced, not run. Needs bash.
. "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lib.sh"

BENCH_DIR=$BOOTSTRAPD_TOP/tests/bench
LUA=$BENCH_DIR/bootstrap-wrk.lua
CLIENT=$BENCH_DIR/benchclient.py
GEOIP_DIR=$BOOTSTRAPD_TOP/run/geoip
CLK_TCK=$(getconf CLK_TCK)
DEVICE_PATH=/auth/bootstrap
REGION_PATH=/auth/bootstrap/regionId/eu-central-1
TOKEN=bench-token
# Public addresses the nearest devices send as X-Forwarded-For, spread over
# three continents; near-i always sends the (i mod 16)-th. The fixtures check
# that the database locates each of them.
NEAREST_REGIONS=aws-us-east-1,aws-eu-central-1,aws-ap-northeast-1
XFF_ADDRESSES=3.208.0.1,3.101.0.1,15.222.0.1,54.232.0.1,8.8.8.8,3.120.0.1,18.130.0.1,35.180.0.1,13.48.0.1,193.0.14.129,13.112.0.1,13.124.0.1,13.54.0.1,13.232.0.1,18.136.0.1,202.12.27.33
# bootstrapd's built-in TLS 1.2 cipher list (http_modern_ciphers in
# src/http.c), given to both servers so that they offer the same.
BENCH_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305

THREADS=${THREADS:-2}
ON_SERVER_CPU=()
ON_CLIENT_CPU=()
BD_PID= NGX_PID= REDIS_PID=
BD_WRAP=()
NGINX_ARGS=()
NGX_WRAP=()
BENCH_READY_S=10
BENCH_PIDS=()
BENCH_AT_EXIT=()

int_arg() { [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got \"${2:-}\""; }
# usage SCRIPT: prints the script's usage block (from its "#   tests/bench/NAME" line to "# Uses").
bench_usage() { sed -n "\|^#   tests/bench/$(basename "$1") |,\|^# Uses|s/^# \{0,1\}//p" "$1"; }

bench_need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c not found (Debian: apt-get install $BOOTSTRAPD_PACKAGES)"
	done
}

# bench_binaries: BIN (bootstrapd) and TLSLOAD, from $BOOTSTRAPD and $TLSLOAD
# if set, else a release build in build-release/ (ninja rebuilds what changed).
bench_binaries() {
	local dir=$BOOTSTRAPD_TOP/build-release
	if [ -z "${BOOTSTRAPD:-}" ] || [ -z "${TLSLOAD:-}" ]; then
		if command -v meson >/dev/null && command -v ninja >/dev/null; then
			say "release build in build-release/"
			build "$dir" --buildtype=release
		fi
	fi
	BIN=${BOOTSTRAPD:-$dir/bootstrapd}
	TLSLOAD=${TLSLOAD:-$dir/tests/tlsload}
	[ -x "$BIN" ] || die "no $BIN: build it first (meson setup build-release --buildtype=release && ninja -C build-release), or set BOOTSTRAPD"
}

# bench_pin: servers (and redis-server) on CPU 0, the load generators on CPU 1.
bench_pin() {
	[ "$(nproc)" -ge 2 ] || die "--pin needs two CPUs"
	ON_SERVER_CPU=(taskset -c 0)
	ON_CLIENT_CPU=(taskset -c 1)
}

# bench_kill PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10); reaps it.
bench_kill() {
	local pid=$1 secs=${2:-10} i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for i in $(seq 1 $((secs * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null
	return 0
}

bench_cleanup() {
	local rc=$?
	set +e
	trap - INT TERM HUP
	# Output may go to a closed pipe (| head): finish the clean-up regardless.
	trap '' PIPE
	if [ $rc -ne 0 ]; then
		for f in "$TMP/bd.log" "$TMP/nginx/error.log" "$TMP/redis.log"; do
			[ -s "$f" ] && { echo "--- last lines of $(basename "$f"):"; tail -n 20 "$f"; } >&2
		done
	fi
	local h p
	for h in "${BENCH_AT_EXIT[@]}"; do $h; done
	for p in "${BENCH_PIDS[@]}"; do bench_kill "$p" 5; done
	[ -n "$BD_PID" ] && bench_kill "$BD_PID" 30
	[ -n "$NGX_PID" ] && bench_kill "$NGX_PID" 30
	if [ -n "$REDIS_PID" ]; then
		kill -CONT "$REDIS_PID"
		redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID"
	fi 2>/dev/null
	rm -rf "$TMP"
	exit $rc
}

# bench_init NAME: the temporary folder, the clean-up on any exit (Ctrl-C
# included), five free ports: redis (RPORT), bootstrapd public (PPORT) and
# admin (APORT), nginx (NPORT) and nginx's stub_status (SPORT).
bench_init() {
	LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
	TMP=$(mktemp -d -t "$1.XXXXXX")
	trap bench_cleanup EXIT
	# bash runs the EXIT trap on these only if they are trapped.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	trap 'exit 141' PIPE
	mkdir -p "$TMP/nginx"
	# All sockets are held open until all are picked: five distinct ports.
	read -r RPORT PPORT APORT NPORT SPORT < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
	ADMIN=http://127.0.0.1:$APORT
	bench_scheme http
}

# bench_scheme http|https: PUBLIC, CEILING and CURL_TLS for that scheme.
bench_scheme() {
	SCHEME=$1
	PUBLIC=$SCHEME://127.0.0.1:$PPORT
	CEILING=$SCHEME://127.0.0.1:$NPORT
	CURL_TLS=()
	[ "$SCHEME" = https ] && CURL_TLS=(--cacert "$TMP/ca.crt")
	return 0
}

# bench_certs: self-signed ECDSA P-256 (ec.crt, ec.key) and RSA-2048
# (rsa.crt, rsa.key) certificates for 127.0.0.1, and both in ca.crt.
bench_certs() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$TMP/ec.key" -out "$TMP/ec.crt" 2>/dev/null || die "openssl could not make an ECDSA certificate"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$TMP/rsa.key" -out "$TMP/rsa.crt" 2>/dev/null || die "openssl could not make an RSA certificate"
	cat "$TMP/ec.crt" "$TMP/rsa.crt" > "$TMP/ca.crt"
}

# redis-server runs in the benchmark's own session (not daemonized: a daemon
# gets a scheduler autogroup of its own, where its nice value means nothing
# to the other groups), at nice -10 where that is allowed. In production it
# has a machine of its own; here it shares two CPUs with the servers and wrk,
# and this kernel's scheduler was seen to leave a daemonized redis-server
# runnable but unscheduled for 640 ms while both CPUs were busy
# (docs/performance.md): bootstrapd then rightly answers 503, and the run
# measures the machine, not the server.
bench_start_redis() {
	local nice=()
	nice -n -10 true 2>/dev/null && nice=(nice -n -10)
	# BENCH_REDIS_ARGS: more redis-server options, e.g. the listpack bounds
	# of docs/redis-topologies.md.
	# shellcheck disable=SC2086
	"${ON_SERVER_CPU[@]}" "${nice[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
		--daemonize no --logfile "$TMP/redis.log" --dir "$TMP" ${BENCH_REDIS_ARGS:-} &
	REDIS_PID=$!
	wait_for 10 redis-cli -p "$RPORT" ping || die "redis-server did not start"
}

# bench_catalog: the shipped catalog, except that eu-central-1's default mqtt
# host is a plain name: every shipped host needs ${productKey}, which the
# regionId form answers with 460 (docs/api.md); and without notify brokers, so
# that the batches send no bootstrap notify (the shipped ones point at
# 127.0.0.1:1883, which may be somebody else's broker).
bench_catalog() {
	python3 - "$BOOTSTRAPD_TOP/data/regions.json" "$TMP/regions.json" <<'PY' || die "cannot derive the bench catalog"
import json, sys
cat = json.load(open(sys.argv[1]))
region = next(r for r in cat["regions"] if r["id"] == "eu-central-1")
inst = next(i for i in region["instances"] if i.get("default")) if len(region["instances"]) > 1 else region["instances"][0]
inst["endpoints"]["mqtt"]["host"] = inst["endpoints"]["mqtt"]["host"].replace("${productKey}.", "")
for r in cat["regions"]:
    for i in r["instances"]:
        i.pop("notify", None)
json.dump(cat, open(sys.argv[2], "w"), indent=1)
PY
}

# bench_config FILE [KEY=JSON ...]: bootstrapd's configuration, with each
# dotted KEY set to the JSON value (cache.entries=0, public.tls={...}, ...).
bench_config() {
	local out=$1
	shift
	python3 - "$out" "$PPORT" "$APORT" "$RPORT" "$TMP/regions.json" "$GEOIP_DIR" "$BOOTSTRAPD_TOP" "$THREADS" \
		"$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" "$@" <<'PY' || die "bad bench configuration: $*"
import json, sys
out, pport, aport, rport, regions, geoip, top, threads, token = sys.argv[1:10]
cfg = {
    "public": {"listen": "127.0.0.1:" + pport},
    "admin": {"listen": "127.0.0.1:" + aport, "tokens": ["sha256:" + token]},
    "redis": {"url": "redis://127.0.0.1:%s/0" % rport},
    "regions": regions,
    "geoip": {"database": [geoip + "/city-ipv4.mmdb", geoip + "/city-ipv6.mmdb"],
              "country_centroids": top + "/data/country-centroids.csv"},
    "threads": int(threads),
    "limits": {"bootstrap_rps_per_ip": 0},
    "log": {"level": "warn"},
}
for kv in sys.argv[10:]:
    key, value = kv.split("=", 1)
    *path, last = key.split(".")
    node = cfg
    for p in path:
        node = node.setdefault(p, {})
    node[last] = json.loads(value)
json.dump(cfg, open(out, "w"), indent=1)
PY
}

# bench_tls_config CERT: the public.tls override for bootstrapd's configuration.
bench_tls_config() {
	printf 'public.tls={"cert": "%s", "key": "%s", "ciphers": "%s", "min_version": "1.2"}' \
		"$TMP/$1.crt" "$TMP/$1.key" "$BENCH_CIPHERS"
}

# bench_start_bootstrapd [ROLE] [CONFIG]: role api unless given; BD_WRAP runs it
# (taskset, valgrind), BENCH_READY_S bounds the wait for /readyz.
bench_start_bootstrapd() {
	kill -CONT "$REDIS_PID"
	# The API role: the device endpoint without the batch worker's own Redis
	# connection. The set-up runs the all role, whose worker applies the batches.
	"${ON_SERVER_CPU[@]}" "${BD_WRAP[@]}" "$BIN" --config "${2:-$TMP/config.json}" --role "${1:-api}" >> "$TMP/bd.log" 2>&1 &
	BD_PID=$!
	wait_for "$BENCH_READY_S" curl -fsS "$ADMIN/readyz" || die "bootstrapd did not become ready"
}

# bench_stop_bootstrapd: SIGTERM; fails unless it exits 0. Pauses redis-server
# so that it does not run while nginx is measured.
bench_stop_bootstrapd() {
	local rc=0 i
	kill -TERM "$BD_PID"
	for i in $(seq 1 600); do
		kill -0 "$BD_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$BD_PID" 2>/dev/null && { kill -KILL "$BD_PID"; die "bootstrapd did not exit within 60 s of SIGTERM"; }
	wait "$BD_PID" || rc=$?
	BD_PID=
	[ $rc -eq 0 ] || die "bootstrapd exited with status $rc on SIGTERM"
	kill -STOP "$REDIS_PID"
}

# bench_fixtures: with bootstrapd running in the all role, creates the product
# a1BenchPK and its 3000 devices (bench-, moved-, near-0000..0999), distributes
# moved- with a region batch and near- with a nearest batch, checks where the
# nearest addresses go (XFF_REGION, NEAREST_SPREAD) and fetches the answers
# nginx is to return (TMP/{device,region,moved,nearest}.{body,headers}).
bench_fixtures() {
	local AUTH="Authorization: Bearer $TOKEN" a i kind b
	curl -fsS -X PUT "$ADMIN/v1/products/a1BenchPK" -H "$AUTH" -d '{"homeRegion":"cn-shanghai"}' >/dev/null ||
		die "could not create the product"
	{ echo deviceName; for p in bench moved near; do for i in $(seq -f %04g 0 999); do echo "$p-$i"; done; done; } \
		> "$TMP/devices.csv"
	curl -fsS -X POST "$ADMIN/v1/products/a1BenchPK/devices" -H "$AUTH" -H 'Content-Type: text/csv' \
		--data-binary @"$TMP/devices.csv" -o "$TMP/secrets.csv" || die "could not register the devices"
	[ "$(wc -l < "$TMP/secrets.csv")" -eq 3001 ] || die "registration did not answer 3000 devices"
	bench_distribute moved "strategy=region&targetRegion=aws-eu-central-1"
	bench_distribute near "strategy=nearest&regions=$NEAREST_REGIONS"

	# Every address is located, and where its devices go.
	declare -gA XFF_REGION
	: > "$TMP/resolve.json"
	for a in ${XFF_ADDRESSES//,/ }; do
		curl -fsS "$ADMIN/v1/devices/a1BenchPK/near-0000/resolve?ip=$a" -H "$AUTH" >> "$TMP/resolve.json" ||
			die "cannot resolve near-0000 from $a"
		echo >> "$TMP/resolve.json"
	done
	NEAREST_SPREAD=$(python3 -c 'import json, sys, collections
seen = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["location"] is None or r["location"]["source"] != "located":
        sys.exit("the GeoIP database does not locate %s" % r["address"])
    seen[r["chosen"]["region"]] += 1
    print("region", r["address"], r["chosen"]["region"])
print("spread", ", ".join("%s %d" % kv for kv in sorted(seen.items())))
' "$TMP/resolve.json") || die "an X-Forwarded-For address is not usable: change XFF_ADDRESSES"
	while read -r kind a b; do
		[ "$kind" = region ] && XFF_REGION[$a]=$b
	done <<< "$NEAREST_SPREAD"
	NEAREST_SPREAD=$(sed -n 's/^spread //p' <<< "$NEAREST_SPREAD")

	bench_fetch device -X POST "$PUBLIC$DEVICE_PATH" \
		-H 'Content-Type: application/x-www-form-urlencoded;charset=utf-8' \
		-H 'Accept: text/xml,text/javascript,text/html,application/json' \
		--data-binary 'productKey=a1BenchPK&deviceName=bench-0000&clientId=a1BenchPK.bench-0000&resources=mqtt'
	# Every device of the product gets the same answer (its host names the product only).
	cp "$TMP/device.body" "$TMP/first.body"
	bench_fetch device -X POST "$PUBLIC$DEVICE_PATH" \
		-H 'Content-Type: application/x-www-form-urlencoded;charset=utf-8' \
		-H 'Accept: text/xml,text/javascript,text/html,application/json' \
		--data-binary 'productKey=a1BenchPK&deviceName=bench-0999&clientId=a1BenchPK.bench-0999&resources=mqtt'
	cmp -s "$TMP/first.body" "$TMP/device.body" || die "bench-0000 and bench-0999 get different answers"
	bench_fetch region -H 'Accept: text/xml,text/javascript,text/html,application/json' "$PUBLIC$REGION_PATH"
	bench_fetch moved -X POST "$PUBLIC$DEVICE_PATH" \
		-H 'Content-Type: application/x-www-form-urlencoded;charset=utf-8' \
		--data-binary 'productKey=a1BenchPK&deviceName=moved-0999&clientId=a1BenchPK.moved-0999&resources=mqtt'
	grep -q 'iot-as-mqtt\.aws-eu-central-1\.' "$TMP/moved.body" ||
		die "moved-0999 is not sent to aws-eu-central-1: $(cat "$TMP/moved.body")"
	# near-i with the address it sends under load gets the region resolve named.
	local XFF
	IFS=, read -ra XFF <<< "$XFF_ADDRESSES"
	for i in 0 5 10; do
		a=${XFF[$((i % ${#XFF[@]}))]}
		bench_fetch nearest -X POST "$PUBLIC$DEVICE_PATH" -H "X-Forwarded-For: $a" \
			-H 'Content-Type: application/x-www-form-urlencoded;charset=utf-8' \
			--data-binary "productKey=a1BenchPK&deviceName=near-$(printf %04d $i)&clientId=a1BenchPK.near-$(printf %04d $i)&resources=mqtt"
		grep -q "iot-as-mqtt\.${XFF_REGION[$a]}\." "$TMP/nearest.body" ||
			die "near-$(printf %04d $i) from $a is not sent to ${XFF_REGION[$a]}: $(cat "$TMP/nearest.body")"
	done
}

# bench_distribute PREFIX QUERY: a batch of PREFIX-0000..0999, applied by the worker.
bench_distribute() {
	local prefix=$1 query=$2 id status="" i AUTH="Authorization: Bearer $TOKEN"
	{ echo productKey,deviceName; for i in $(seq -f %04g 0 999); do echo "a1BenchPK,$prefix-$i"; done; } \
		> "$TMP/$prefix.csv"
	id=$(curl -fsS -X POST "$ADMIN/v1/batches?$query" -H "$AUTH" -H 'Content-Type: text/csv' \
		--data-binary @"$TMP/$prefix.csv" | python3 -c 'import json, sys; print(json.load(sys.stdin)["batchId"])') ||
		die "the $prefix batch ($query) was refused"
	for i in $(seq 1 600); do
		curl -fsS "$ADMIN/v1/batches/$id" -H "$AUTH" > "$TMP/batch.json" || die "cannot read batch $id"
		status=$(python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))
print(b["status"] if b["status"] != "completed" or b["succeeded"] == b["total"] == 1000 else "incomplete")' \
			"$TMP/batch.json")
		case $status in
		completed) return 0 ;;
		failed|incomplete) die "the $prefix batch ended $status: $(cat "$TMP/batch.json")" ;;
		esac
		sleep 0.1
	done
	die "the $prefix batch did not complete within 60 s: $(cat "$TMP/batch.json")"
}

# bench_fetch NAME CURL-ARGS...: an answer nginx is to return: status 200 and JSON, or stop here.
bench_fetch() {
	local name=$1
	shift
	local code
	code=$(curl -sS "${CURL_TLS[@]}" -o "$TMP/$name.body" -D "$TMP/$name.headers" -w '%{http_code}' "$@") ||
		die "curl failed fetching the $name answer"
	[ "$code" = 200 ] || die "the $name answer is HTTP $code: $(cat "$TMP/$name.body")"
	grep -qi '^content-type: application/json; charset=utf-8' "$TMP/$name.headers" ||
		die "the $name answer is not application/json; charset=utf-8"
	# Embedded in nginx's return '...': no quote, backslash or variable.
	! grep -q "['\\\$]" "$TMP/$name.body" || die "the $name answer cannot be put in nginx.conf as is"
}

# bench_nginx_conf FILE [tls=NAME] [workers=N] [master=on|off] [connections=N]
#                  [keepalive=S] [main=...] [http=...]:
# nginx returning the device and region answers' bytes on NPORT (TLS with the
# certificate NAME, ec or rsa, and bootstrapd's ciphers and minimum version),
# and stub_status on SPORT; connections: worker_connections (4096), keepalive:
# keepalive_timeout (65 s). main and http add directives to those blocks.
bench_nginx_conf() {
	local out=$1 tls= workers=$THREADS master=on connections=4096 keepalive=65 main= http= kv ssl=
	shift
	for kv in "$@"; do
		case $kv in
		tls=*) tls=${kv#tls=} ;;
		workers=*) workers=${kv#workers=} ;;
		master=*) master=${kv#master=} ;;
		connections=*) connections=${kv#connections=} ;;
		keepalive=*) keepalive=${kv#keepalive=} ;;
		main=*) main=${kv#main=} ;;
		http=*) http=${kv#http=} ;;
		*) die "bench_nginx_conf: unknown $kv" ;;
		esac
	done
	if [ -n "$tls" ]; then
		ssl="ssl_certificate $TMP/$tls.crt; ssl_certificate_key $TMP/$tls.key;
		ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers $BENCH_CIPHERS; ssl_prefer_server_ciphers on;
		ssl_session_cache shared:SSL:10m; ssl_session_tickets on; ssl_session_timeout 1h;"
	fi
	cat > "$out" <<CONF
daemon off;
master_process $master;
worker_processes $workers;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
$main
events { worker_connections $connections; }
http {
	access_log off;
	server_tokens off;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	keepalive_timeout ${keepalive}s;
	keepalive_requests 1000000000;
	$http
	server {
		listen 127.0.0.1:$NPORT reuseport$([ -n "$tls" ] && echo ' ssl');
		$ssl
		default_type "application/json; charset=utf-8";
		location = $DEVICE_PATH { return 200 '$(cat "$TMP/device.body")'; }
		location = $REGION_PATH { return 200 '$(cat "$TMP/region.body")'; }
	}
	server {
		listen 127.0.0.1:$SPORT;
		location = /status { stub_status; }
	}
}
CONF
	nginx -t -e "$TMP/nginx/error.log" -c "$out" -p "$TMP/nginx/" 2>"$TMP/nginx/t.log" ||
		{ cat "$TMP/nginx/t.log" >&2; die "nginx refused its configuration"; }
}

# bench_start_nginx [CONF]: NGX_WRAP runs it (valgrind).
bench_start_nginx() {
	"${ON_SERVER_CPU[@]}" "${NGX_WRAP[@]}" nginx -e "$TMP/nginx/error.log" -c "${1:-$TMP/nginx/nginx.conf}" -p "$TMP/nginx/" &
	NGX_PID=$!
	wait_for "$BENCH_READY_S" curl -fsS "http://127.0.0.1:$SPORT/status" || die "nginx did not start"
}
bench_stop_nginx() {
	kill -QUIT "$NGX_PID"
	bench_kill_wait "$NGX_PID" 60
	NGX_PID=
}
# bench_kill_wait PID SECONDS: waits for PID to exit, SIGKILL after SECONDS.
bench_kill_wait() {
	local i
	for i in $(seq 1 $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# bench_check_nginx: nginx (running) answers the device and region bodies bootstrapd gave.
bench_check_nginx() {
	curl -fsS "${CURL_TLS[@]}" -o "$TMP/device.nginx" -D "$TMP/device.nginx-headers" \
		-H 'Content-Type: application/x-www-form-urlencoded;charset=utf-8' \
		--data-binary 'productKey=a1BenchPK&deviceName=bench-0000&clientId=a1BenchPK.bench-0000&resources=mqtt' \
		"$CEILING$DEVICE_PATH" || die "nginx did not answer the device request"
	curl -fsS "${CURL_TLS[@]}" -o "$TMP/region.nginx" -D "$TMP/region.nginx-headers" "$CEILING$REGION_PATH" ||
		die "nginx did not answer the region request"
	local name
	for name in device region; do
		cmp -s "$TMP/$name.body" "$TMP/$name.nginx" || die "nginx's $name body differs from bootstrapd's"
		grep -qi '^content-type: application/json; charset=utf-8' "$TMP/$name.nginx-headers" ||
			die "nginx's $name answer has another Content-Type"
	done
}

# bench_setup [KEY=JSON ...]: redis-server, the catalog, TMP/config.json
# (with the overrides), bootstrapd in the all role for the fixtures, then
# stopped; nginx's configuration TMP/nginx/nginx.conf, checked once.
# NGINX_ARGS (an array) are passed to bench_nginx_conf.
bench_setup() {
	fetch_geoip "$GEOIP_DIR" || die "could not fetch the GeoIP database into $GEOIP_DIR (npm)"
	bench_start_redis
	bench_catalog
	bench_config "$TMP/config.json" "$@"
	bench_start_bootstrapd all
	bench_fixtures
	bench_stop_bootstrapd
	bench_nginx_conf "$TMP/nginx/nginx.conf" "${NGINX_ARGS[@]}"
	bench_start_nginx
	bench_check_nginx
	bench_stop_nginx
}

# bench_requests FORM OUT [close]: raw requests of a request form (device,
# region, moved, nearest), NUL-separated, for tlsload and benchclient.py.
bench_requests() {
	python3 "$CLIENT" requests --form "$1" --xff "$XFF_ADDRESSES" ${3:+--close} --out "$2" ||
		die "cannot write the $1 requests"
}

cpu_ticks() { # utime + stime of the given processes, all threads
	local p t=0
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo $t
}
machine_ticks() { # busy CPU time of the whole machine (user nice system irq softirq steal)
	awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}
rss_kib() { local p t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done; echo $t; }
# Anonymous memory only: the GeoIP files are mapped, and the pages a run
# touches count in VmRSS without being allocations.
anon_kib() { local p t=0; for p in "$@"; do t=$((t + $(awk '/^RssAnon:/ {print $2}' "/proc/$p/status"))); done; echo $t; }
fd_count() { local p t=0; for p in "$@"; do t=$((t + $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l))); done; echo $t; }
# TCP connections accepted by anything on the machine so far (the kernel's
# PassiveOpens): the servers' own count of new connections, give or take
# whatever else on the machine accepts connections meanwhile.
passive_opens() { awk '$1 == "Tcp:" && $2 ~ /^[0-9]+$/ {print $7}' /proc/net/snmp; }
non200() { # answers of the bootstrap routes that were not 200, so far
	curl -fsS "$ADMIN/metrics" | awk '/^bootstrapd_http_requests_total\{route="bootstrap(_region)?"/ &&
		!/status="200"/ {n += $2} END {print n + 0}'
}
bootstrap_requests() { # answers of the bootstrap routes, so far
	curl -fsS "$ADMIN/metrics" | awk '/^bootstrapd_http_requests_total\{route="bootstrap(_region)?"/ {n += $2}
		END {print n + 0}'
}
redis_trouble() {
	curl -fsS "$ADMIN/metrics" | awk '/^bootstrapd_redis_(errors|timeouts)_total / {n += $2} END {print n + 0}'
}
geo_lookups() { # located, not located (country only or not found), so far
	curl -fsS "$ADMIN/metrics" | awk '/^bootstrapd_geo_lookups_located_total / {l += $2}
		/^bootstrapd_geo_lookups_(country_only|not_found)_total / {o += $2} END {print l + 0, o + 0}'
}
nginx_status() { # accepts handled requests, so far (stub_status)
	curl -fsS "http://127.0.0.1:$SPORT/status" | awk 'NR == 3 {print $1, $2, $3}'
}
nginx_pids() { echo "$NGX_PID" $(cat "/proc/$NGX_PID/task/$NGX_PID/children" 2>/dev/null); }

# run_wrk MODE URL OUTFILE [SECONDS] [LUA-ARGS...]: one wrk run of CONNS
# connections and WRK_THREADS threads; fails on any error; prints the result line.
run_wrk() {
	local mode=$1 url=$2 out=$3 secs=${4:-$DURATION} line
	shift $(($# < 4 ? $# : 4))
	timeout $((secs + 30)) "${ON_CLIENT_CPU[@]}" wrk -t "$WRK_THREADS" -c "$CONNS" -d "${secs}s" -s "$LUA" "$url" \
		-- "$mode" "$XFF_ADDRESSES" "$@" \
		> "$out" 2>&1 || { cat "$out" >&2; die "wrk failed against $url"; }
	# CPU time of this shell's children so far: wrk's, when called as $(run_wrk ...).
	times > "$out.times"
	line=$(grep '^wrk-result ' "$out") || { cat "$out" >&2; die "wrk printed no result line"; }
	# shellcheck disable=SC2086
	local ${line#wrk-result }
	if [ "$non2xx" -ne 0 ] || [ "$connect_errors" -ne 0 ] || [ "$read_errors" -ne 0 ] ||
	   [ "$write_errors" -ne 0 ] || [ "$timeouts" -ne 0 ] || [ "$requests" -eq 0 ]; then
		cat "$out" >&2
		die "FAILED: $mode run against $url: $requests requests, $non2xx answered 4xx/5xx, socket errors connect $connect_errors read $read_errors write $write_errors timeout $timeouts"
	fi
	echo "$line wrk_ticks=$(awk -v hz="$CLK_TCK" 'NR == 2 {n = 0; for (i = 1; i <= 2; i++) {
		split($i, t, /[ms]/); n += t[1] * 60 + t[2] }; printf "%d", n * hz}' "$out.times")"
}

# bench_versions: one line naming what was measured, and how busy the machine was.
bench_versions() {
	echo "bootstrapd $("$BIN" --version | awk '{print $2}') ($BIN), $(nginx -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -n 1 | awk '{print "wrk " $2}'), $(openssl version | awk '{print "OpenSSL " $2}'), $(nproc) CPUs, $(uname -r)"
	echo "1-minute load average before the runs: $LOAD_BEFORE$(awk -v l="$LOAD_BEFORE" 'BEGIN {if (l > 0.5) print " (the machine was not idle: figures may be skewed)"}')"
}
