"""GeoIP and the `nearest` strategy (SPEC §4, §5 resolve, §6; docs/geoip.md):
which candidate a device gets from which client address, with both database
schemas, country-only databases and centroids, several database files,
trusted proxies and X-Forwarded-For / Forwarded, the PROXY protocol (v1, v2,
under TLS), the admin API's explain call, SIGHUP reloads of the database,
/readyz and /metrics, and the real GeoLite2 database when it is installed.

The MaxMind DB fixtures come from tests/geoip/make-fixtures.pl (Perl,
MaxMind::DB::Writer), made once per run in a temporary folder (or taken from
$BOOTSTRAPD_TEST_GEOIP_FIXTURES). Their documentation networks stand for real
places: 192.0.2.0/24 and 2001:db8:1::/48 Frankfurt (DE), 198.51.100.0/24 and
2001:db8:2::/48 Tokyo (JP), 203.0.113.0/24 Ashburn (US).

The tests connect from 127.0.0.1, which the default trusted_proxies trust:
their X-Forwarded-For is believed unless a class says otherwise."""

import atexit
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HarnessCase, success_body, SDK_ACCEPT, SDK_CONTENT_TYPE  # noqa: E402
from test_admin import AdminAsserts  # noqa: E402

EU, AP, US = "eu-central-1", "ap-northeast-1", "us-east-1"
PLACES = {EU: (50.1109, 8.6821), AP: (35.6762, 139.6503), US: (39.0438, -77.4874)}
CANDS = "us-east-1,eu-central-1,ap-northeast-1"  # the first candidate is the fallback
CANDS_AP_FIRST = "ap-northeast-1,eu-central-1,us-east-1"  # makes "US located" differ from the fallback
CENTROID = {"DE": (51.165691, 10.451526), "JP": (36.204824, 138.252924), "US": (37.09024, -95.712891)}
EARTH_KM = 6371.0088
GEO_CONFIG_BASE = {"redis": {"timeout_ms": 2000}, "worker": {"pause_ms": 0}}

LOCATED = "bootstrapd_geo_lookups_located_total"
COUNTRY_ONLY = "bootstrapd_geo_lookups_country_only_total"
NOT_FOUND = "bootstrapd_geo_lookups_not_found_total"


def instance(region):
    return "iot-" + region


def host(region):
    return "mqtt.%s.example.com" % region


def answer(region):
    return success_body([("mqtt", host(region), 8883, None)])


REGION_OF_ANSWER = {answer(r): r for r in (EU, AP, US)}


def geo_regions():
    return {"regions": [
        {"id": r, "name": r, "latitude": PLACES[r][0], "longitude": PLACES[r][1],
         "instances": [{"id": instance(r), "default": True,
                        "endpoints": {"mqtt": {"host": host(r), "port": 8883}}}]}
        for r in (EU, AP, US)]}


def haversine(a, b):
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * EARTH_KM * math.asin(math.sqrt(h))


# ------------------------------------------------------------------ fixtures

_fixture_dir = None


def fixtures():
    """The folder with city.mmdb, flat.mmdb, country.mmdb and ipv4.mmdb.
    Raises RuntimeError when they cannot be made."""
    global _fixture_dir
    if _fixture_dir:
        return _fixture_dir
    given = os.environ.get("BOOTSTRAPD_TEST_GEOIP_FIXTURES")
    if given:
        _fixture_dir = given
    else:
        script = os.path.join(harness.source_root(), "tests", "geoip", "make-fixtures.pl")
        if not os.path.exists(script):
            raise RuntimeError("%s does not exist" % script)
        if shutil.which("perl") is None:
            raise RuntimeError("perl is not in PATH")
        d = tempfile.mkdtemp(prefix="bootstrapd-geoip-")
        atexit.register(shutil.rmtree, d, True)
        r = subprocess.run(["perl", script, d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("perl %s failed (needs MaxMind::DB::Writer, Debian package "
                               "libmaxmind-db-writer-perl): %s" % (script, r.stdout.decode(errors="replace")))
        _fixture_dir = d
    for name in ("city.mmdb", "flat.mmdb", "country.mmdb"):
        if not os.path.exists(os.path.join(_fixture_dir, name)):
            raise RuntimeError("fixture %s missing in %s" % (name, _fixture_dir))
    return _fixture_dir


def fixture(name):
    return os.path.join(fixtures(), name)


def centroids_path():
    return os.path.join(harness.source_root(), "data", "country-centroids.csv")


def real_db_paths():
    d = os.path.join(harness.source_root(), "run", "geoip")
    return [os.path.join(d, "city-ipv4.mmdb"), os.path.join(d, "city-ipv6.mmdb")]


# ------------------------------------------------------------- wire helpers

def form(pk, dn):
    return "productKey=%s&deviceName=%s&clientId=%s.%s&resources=mqtt" % (pk, dn, pk, dn)


def sdk(pk, dn, headers=()):
    """The SDK's bootstrap request with extra header lines HEADERS
    ([(name, value)])."""
    body = form(pk, dn).encode()
    lines = ["POST /auth/bootstrap HTTP/1.1", "Host: 127.0.0.1", "Accept: " + SDK_ACCEPT,
             "Content-Type: " + SDK_CONTENT_TYPE]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def xff(value):
    return [("X-Forwarded-For", value)]


def proxy_v1(src, dst="127.0.0.1", sport=5555, dport=443):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src=None, dst=None, sport=5555, dport=443, local=False, tlvs=b"", raw_ver_cmd=None):
    """A PROXY v2 header: PROXY command with SRC (IPv4 or IPv6 text), or LOCAL
    (UNSPEC, no addresses). TLVS appended to the address block."""
    if local:
        fam, addrs = 0x00, b""
    elif ":" in src:
        fam = 0x21
        addrs = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst or "::1")
                 + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
    else:
        fam = 0x11
        addrs = (socket.inet_aton(src) + socket.inet_aton(dst or "127.0.0.1")
                 + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
    payload = addrs + tlvs
    ver_cmd = raw_ver_cmd if raw_ver_cmd is not None else (0x20 if local else 0x21)
    return V2_SIG + bytes([ver_cmd, fam]) + len(payload).to_bytes(2, "big") + payload


def tlv(kind, value):
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def proxied(port, header, requests, tls=None, split=False, timeout=harness.SOCKET_TIMEOUT_S):
    """Connects, sends HEADER (a PROXY header, raw), then under TLS when TLS
    (an SSLContext) is given, each of REQUESTS on the one connection, reading
    each answer. SPLIT: the header goes byte by byte with small pauses, and
    apart from the request. Returns the list of Responses."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if split:
            for i in range(len(header)):
                s.sendall(header[i:i + 1])
                if i % 8 == 0:
                    time.sleep(0.005)
            time.sleep(0.05)
        elif tls is not None or len(requests) != 1:
            s.sendall(header)
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname="localhost")
            s.settimeout(timeout)
        out = []
        for i, req in enumerate(requests):
            if i == 0 and not split and tls is None and len(requests) == 1:
                s.sendall(header + req)  # one segment, as most balancers send it
            else:
                s.sendall(req)
            out.append(harness.read_response(s, timeout))
        return out
    finally:
        s.close()


def closed_without_answer(port, data, timeout=harness.SOCKET_TIMEOUT_S):
    """Sends DATA and reads until the server closes. Returns the bytes the
    server sent (b"" when it closed without answering); raises
    socket.timeout when it keeps the connection open past TIMEOUT."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return bytes(got)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("connection still open after %.1fs; got %r" % (timeout, bytes(got[:200])))
            s.settimeout(left)
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                return bytes(got)
            if not chunk:
                return bytes(got)
            got.extend(chunk)


# ------------------------------------------------------------------ asserts

class GeoAsserts(AdminAsserts):
    def region_of(self, r):
        """The region a bootstrap Response names (fails on anything else)."""
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.body, REGION_OF_ANSWER, "not an answer of any of the three regions: %r" % r.body)
        return REGION_OF_ANSWER[r.body]

    def boot(self, pk, dn, headers=()):
        return self.h.public(sdk(pk, dn, headers))

    def assertRegion(self, pk, dn, region, headers=(), msg=None):
        got = self.region_of(self.boot(pk, dn, headers))
        self.assertEqual(got, region, msg or "%s/%s with headers %r" % (pk, dn, list(headers)))

    def explain(self, pk, dn, ip, status=200):
        from urllib.parse import quote
        r = self.h.admin("GET", "/v1/devices/%s/%s/resolve?ip=%s" % (pk, dn, quote(ip, safe="")))
        if status != 200:
            return r
        self.assertEqual(r.status, 200, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/json"), r.header_lines)
        return r.json()

    def assertLocation(self, loc, country, source, point, tol_deg=0.01):
        self.assertIsInstance(loc, dict, "location should be an object")
        self.assertEqual(loc.get("country"), country, loc)
        self.assertEqual(loc.get("source"), source, loc)
        self.assertIsInstance(loc.get("latitude"), (int, float), loc)
        self.assertIsInstance(loc.get("longitude"), (int, float), loc)
        self.assertAlmostEqual(loc["latitude"], point[0], delta=tol_deg, msg=loc)
        self.assertAlmostEqual(loc["longitude"], point[1], delta=tol_deg, msg=loc)

    def metrics(self):
        text = self.h.metrics()
        return {k: harness.metric_sum(text, k) for k in (LOCATED, COUNTRY_ONLY, NOT_FOUND)}

    def assertMetricDelta(self, before, **delta):
        names = {"located": LOCATED, "country_only": COUNTRY_ONLY, "not_found": NOT_FOUND}
        after = self.metrics()
        for short, name in names.items():
            self.assertIsNotNone(after[name], "/metrics has no %s" % name)
            self.assertEqual(after[name] - (before[name] or 0), delta.get(short, 0),
                             "%s moved by %s, expected %s (before %r, after %r)"
                             % (name, after[name] - (before[name] or 0), delta.get(short, 0), before, after))

    def readyz(self):
        return self.h.admin("GET", "/readyz", token=None)


class GeoCase(GeoAsserts, HarnessCase):
    """One daemon on the three-region catalog. DBS: fixture names (or
    absolute paths), None for no GeoIP; CENTROIDS: use the shipped centroid
    table; CONFIG: merged last."""
    dbs = ["city.mmdb"]
    centroids = True
    config = {}
    tls = None

    @classmethod
    def geo_config(cls):
        cfg = harness.deep_merge(GEO_CONFIG_BASE, {})
        if cls.dbs is not None:
            g = {"database": [d if os.path.isabs(d) else fixture(d) for d in cls.dbs]}
            if cls.centroids:
                g["country_centroids"] = centroids_path()
            cfg["geoip"] = g
        return harness.deep_merge(cfg, cls.config)

    @classmethod
    def setUpClass(cls):
        cls.harness_args = {"config": cls.geo_config(), "regions": geo_regions(), "tls": cls.tls}
        super().setUpClass()

    @classmethod
    def nearest(cls, pk, names, regions=CANDS):
        cls.h.distribute(harness.csv_body([[pk, n] for n in names]), "strategy=nearest&regions=" + regions)


# --------------------------------------------------- nearest, both schemas

# (headers, expected region) with candidates us-east-1,eu-central-1,ap-northeast-1.
ADDRESS_CASES = [
    (xff("192.0.2.10"), EU),
    (xff("198.51.100.7"), AP),
    (xff("203.0.113.5"), US),
    (xff("2001:db8:1::5"), EU),
    (xff("2001:db8:2::9"), AP),
    (xff("::ffff:198.51.100.7"), AP),   # IPv4-mapped counts as the IPv4 address
    (xff("::ffff:192.0.2.10"), EU),
    ([], US),                           # the peer 127.0.0.1 has no location
    (xff("10.1.2.3"), US),
    (xff("192.168.7.7"), US),
    (xff("8.8.8.8"), US),               # public but not in the fixture
]


class NearestCases:
    """The address table, status recording and the strategies that must not
    look anything up; the subclasses pick the database schema."""

    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("pkG", region=EU, instance=None)
        h.register("pkG", ["near-01", "near-02", "near-ap1", "reg-01", "home-01"])
        cls.nearest("pkG", ["near-01", "near-02"])
        cls.nearest("pkG", ["near-ap1"], CANDS_AP_FIRST)
        h.distribute(harness.csv_body([["pkG", "reg-01"]]), "targetRegion=" + AP)
        h.put_product("pkP", region=EU, instance=None)
        h.register("pkP", ["prod-01"])
        h.distribute({"strategy": "region", "targetRegion": AP, "products": ["pkP"]})

    def test_addresses(self):
        for headers, region in ADDRESS_CASES:
            with self.subTest(headers=headers):
                self.assertRegion("pkG", "near-01", region, headers)

    def test_us_located_not_fallback(self):
        # With ap-northeast-1 first, Ashburn can only come from the lookup.
        self.assertRegion("pkG", "near-ap1", US, xff("203.0.113.5"))
        self.assertRegion("pkG", "near-ap1", AP, xff("10.1.2.3"))
        self.assertRegion("pkG", "near-ap1", EU, xff("192.0.2.10"))

    def test_answer_follows_each_request(self):
        # No answer is cached per device across addresses.
        for region, ip in ((AP, "198.51.100.7"), (EU, "192.0.2.10"), (AP, "198.51.100.8"), (US, "203.0.113.9"),
                           (EU, "2001:db8:1::77")):
            self.assertRegion("pkG", "near-01", region, xff(ip))

    def test_status_and_last_resolved_region(self):
        d = self.h.device("pkG", "near-02")
        self.assertEqual(d["status"], "inactive", d)
        self.assertIsNone(d.get("lastResolvedRegion"), d)
        self.assertEqual(d["assignment"]["strategy"], "nearest", d)
        self.assertRegion("pkG", "near-02", AP, xff("198.51.100.7"))

        def shows(region):
            d = self.h.device("pkG", "near-02")
            return d if d["status"] == "active" and d.get("lastResolvedRegion") == region else None
        try:
            d = harness.wait_until(lambda: shows(AP), 5, "near-02 active with lastResolvedRegion " + AP)
        except TimeoutError:
            self.fail("device after a bootstrap from Tokyo: %r" % self.h.device("pkG", "near-02"))
        self.assertTrue(d.get("activatedAt"), d)
        self.assertTrue(d.get("lastBootstrapAt"), d)
        # The region resolved last is recorded when it changes.
        self.assertRegion("pkG", "near-02", EU, xff("192.0.2.10"))
        try:
            harness.wait_until(lambda: shows(EU), 5, "near-02 lastResolvedRegion " + EU)
        except TimeoutError:
            self.fail("device after a bootstrap from Frankfurt: %r" % self.h.device("pkG", "near-02"))

    def test_region_strategy_and_home_unaffected(self):
        before = self.metrics()
        for headers in (xff("192.0.2.10"), xff("203.0.113.5"), xff("2001:db8:1::5"), []):
            with self.subTest(headers=headers):
                self.assertRegion("pkG", "reg-01", AP, headers, "region strategy device")
                self.assertRegion("pkG", "home-01", EU, headers, "device at its product's home")
                self.assertRegion("pkP", "prod-01", AP, headers, "device of a distributed product")
        # docs/geoip.md: they need no lookup and make none.
        self.assertMetricDelta(before)

    def test_metrics_count_lookups(self):
        before = self.metrics()
        self.assertRegion("pkG", "near-01", AP, xff("198.51.100.7"))
        self.assertRegion("pkG", "near-01", EU, xff("2001:db8:1::5"))
        self.assertRegion("pkG", "near-01", US, xff("10.1.2.3"))
        self.assertMetricDelta(before, located=2, not_found=1)

    def test_readyz_open(self):
        r = self.readyz()
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j.get("status"), "ready", j)
        self.assertEqual(j.get("geoip"), "open", j)


class NearestCity(NearestCases, GeoCase):
    dbs = ["city.mmdb"]


class NearestFlat(NearestCases, GeoCase):
    dbs = ["flat.mmdb"]


# ---------------------------------------------------------- country only

class CountryOnly(GeoCase):
    """A country-only database: the country's centroid stands for the address."""
    dbs = ["country.mmdb"]

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkC", region=EU, instance=None)
        cls.h.register("pkC", ["cty-01", "cty-ap1"])
        cls.nearest("pkC", ["cty-01"])
        cls.nearest("pkC", ["cty-ap1"], CANDS_AP_FIRST)

    def test_by_centroid(self):
        for ip, region in (("192.0.2.10", EU), ("198.51.100.7", AP), ("203.0.113.5", US)):
            with self.subTest(ip=ip):
                self.assertRegion("pkC", "cty-01", region, xff(ip))
        # US centroid (37.1,-95.7) is nearest Ashburn, not the fallback.
        self.assertRegion("pkC", "cty-ap1", US, xff("203.0.113.5"))
        self.assertRegion("pkC", "cty-ap1", EU, xff("192.0.2.10"))
        # Not in the database at all: first candidate.
        self.assertRegion("pkC", "cty-ap1", AP, xff("2001:db8:1::5"))
        self.assertRegion("pkC", "cty-01", US, xff("2001:db8:1::5"))

    def test_explain_country_only(self):
        for ip, cc, region in (("192.0.2.10", "DE", EU), ("198.51.100.7", "JP", AP), ("203.0.113.5", "US", US)):
            with self.subTest(ip=ip):
                j = self.explain("pkC", "cty-ap1", ip)
                self.assertLocation(j.get("location"), cc, "country_only", CENTROID[cc])
                self.assertEqual(j["chosen"]["region"], region, j)
                self.assertRegex(j.get("reason", ""), r"(?i)countr|centr", j)
        # A code the centroid table does not know ("ZZ") has no location.
        j = self.explain("pkC", "cty-ap1", "2001:db8:4::1")
        self.assertIsNone(j.get("location", "absent"), j)
        self.assertEqual(j["chosen"]["region"], AP, j)

    def test_metrics_country_only(self):
        before = self.metrics()
        self.assertRegion("pkC", "cty-01", EU, xff("192.0.2.10"))
        self.assertRegion("pkC", "cty-01", AP, xff("198.51.100.7"))
        self.assertRegion("pkC", "cty-01", US, xff("2001:db8:1::5"))
        self.assertMetricDelta(before, country_only=2, not_found=1)


class CountryWithoutCentroids(GeoCase):
    """docs/geoip.md: without the centroid table a country-only answer is no
    location: first candidate."""
    dbs = ["country.mmdb"]
    centroids = False

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkCN", region=EU, instance=None)
        cls.h.register("pkCN", ["cn-01"])
        cls.nearest("pkCN", ["cn-01"], CANDS_AP_FIRST)

    def test_first_candidate(self):
        for ip in ("192.0.2.10", "203.0.113.5", "198.51.100.7"):
            with self.subTest(ip=ip):
                self.assertRegion("pkCN", "cn-01", AP, xff(ip))
        j = self.explain("pkCN", "cn-01", "192.0.2.10")
        self.assertIsNone(j.get("location", "absent"), j)
        self.assertEqual(j["chosen"]["region"], AP, j)


# ----------------------------------------------- several databases, in order

class OrderCountryFirst(GeoCase):
    """["country.mmdb", "city.mmdb"]: the first file that has the address
    decides, even when a later one knows it better; a file without the
    address is passed over."""
    dbs = ["country.mmdb", "city.mmdb"]

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkO", region=EU, instance=None)
        cls.h.register("pkO", ["ord-01"])
        cls.nearest("pkO", ["ord-01"])

    def test_first_file_with_the_address_wins(self):
        j = self.explain("pkO", "ord-01", "192.0.2.10")
        self.assertLocation(j.get("location"), "DE", "country_only", CENTROID["DE"])
        self.assertEqual(j["chosen"]["region"], EU, j)
        j = self.explain("pkO", "ord-01", "203.0.113.5")
        self.assertLocation(j.get("location"), "US", "country_only", CENTROID["US"])
        # country.mmdb has no IPv6 networks: city.mmdb answers.
        j = self.explain("pkO", "ord-01", "2001:db8:2::1")
        self.assertLocation(j.get("location"), "JP", "located", PLACES[AP])
        self.assertEqual(j["chosen"]["region"], AP, j)
        j = self.explain("pkO", "ord-01", "10.1.2.3")
        self.assertIsNone(j.get("location", "absent"), j)

    def test_bootstrap_counts_by_the_deciding_file(self):
        before = self.metrics()
        self.assertRegion("pkO", "ord-01", EU, xff("192.0.2.10"))
        self.assertRegion("pkO", "ord-01", AP, xff("2001:db8:2::1"))
        self.assertRegion("pkO", "ord-01", US, xff("10.1.2.3"))
        self.assertMetricDelta(before, country_only=1, located=1, not_found=1)


class OrderCityFirst(GeoCase):
    dbs = ["city.mmdb", "country.mmdb"]

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkO", region=EU, instance=None)
        cls.h.register("pkO", ["ord-01"])
        cls.nearest("pkO", ["ord-01"])

    def test_city_decides(self):
        j = self.explain("pkO", "ord-01", "192.0.2.10")
        self.assertLocation(j.get("location"), "DE", "located", PLACES[EU])
        j = self.explain("pkO", "ord-01", "203.0.113.5")
        self.assertLocation(j.get("location"), "US", "located", PLACES[US])


class OrderV4FileThenV6(GeoCase):
    """Like the shipped [city-ipv4.mmdb, city-ipv6.mmdb]: an IPv4-only file
    (it cannot look up IPv6 at all) before a file that has both."""
    dbs = ["ipv4.mmdb", "flat.mmdb"]

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(fixture("ipv4.mmdb")):
            raise unittest.SkipTest("the fixtures have no ipv4.mmdb")
        super().setUpClass()

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkV", region=EU, instance=None)
        cls.h.register("pkV", ["v46-01"])
        cls.nearest("pkV", ["v46-01"])

    def test_v4_and_v6(self):
        self.assertRegion("pkV", "v46-01", EU, xff("192.0.2.10"))    # ipv4.mmdb
        self.assertRegion("pkV", "v46-01", AP, xff("198.51.100.7"))  # not in ipv4.mmdb: flat.mmdb
        self.assertRegion("pkV", "v46-01", AP, xff("2001:db8:2::1"))  # IPv6: ipv4.mmdb passed over
        self.assertRegion("pkV", "v46-01", EU, xff("2001:db8:1::1"))
        self.assertRegion("pkV", "v46-01", AP, xff("::ffff:198.51.100.7"))


# ------------------------------------------------------------ no GeoIP

class NoGeoip(GeoCase):
    dbs = None

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkN", region=EU, instance=None)
        cls.h.register("pkN", ["ng-01"])
        cls.nearest("pkN", ["ng-01"])

    def test_first_candidate_always(self):
        for ip in ("198.51.100.7", "192.0.2.10", "10.1.2.3"):
            self.assertRegion("pkN", "ng-01", US, xff(ip))

    def test_readyz_off(self):
        r = self.readyz()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("geoip"), "off", r.body)

    def test_explain_without_geoip(self):
        j = self.explain("pkN", "ng-01", "198.51.100.7")
        self.assertIsNone(j.get("location", "absent"), j)
        self.assertEqual(j["chosen"]["region"], US, j)
        self.assertRegex(j.get("reason", ""), r"(?i)geoip|first candidate", j)


# ------------------------------------------------------- trusted proxies

class UntrustedPeer(GeoCase):
    """127.0.0.1 is not a trusted proxy here: its headers are ignored."""
    config = {"trusted_proxies": ["10.0.0.0/8"]}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkU", region=EU, instance=None)
        cls.h.register("pkU", ["ut-01"])
        cls.nearest("pkU", ["ut-01"])

    def test_spoofed_headers_ignored(self):
        for headers in (xff("198.51.100.7"), xff("192.0.2.10, 198.51.100.7"), [("Forwarded", "for=198.51.100.7")],
                        [("X-Forwarded-For", "198.51.100.7"), ("Forwarded", "for=192.0.2.60")],
                        [("X-Real-IP", "198.51.100.7")]):
            with self.subTest(headers=headers):
                self.assertRegion("pkU", "ut-01", US, headers)

    def test_peer_is_looked_up(self):
        before = self.metrics()
        self.assertRegion("pkU", "ut-01", US, xff("198.51.100.7"))
        self.assertMetricDelta(before, not_found=1)

    def test_explain_still_takes_ip(self):
        j = self.explain("pkU", "ut-01", "198.51.100.7")
        self.assertEqual(j["chosen"]["region"], AP, j)


class TrustedPeer(GeoCase):
    """Default trusted_proxies (127.0.0.0/8, ::1/128): the right-most
    untrusted address of X-Forwarded-For, else of Forwarded: for=."""

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkT", region=EU, instance=None)
        cls.h.register("pkT", ["tr-01"])
        cls.nearest("pkT", ["tr-01"])

    def test_right_most_untrusted(self):
        cases = [
            (xff("198.51.100.7, 127.0.0.5"), AP),
            (xff("198.51.100.7,127.0.0.5,127.9.9.9"), AP),
            (xff("203.0.113.5, 192.0.2.10"), EU),          # the client cannot prepend its way to US
            (xff("192.0.2.10, 198.51.100.7, 127.0.0.1"), AP),
            (xff("2001:db8:2::4, ::1"), AP),
            (xff("127.0.0.5"), US),                         # only trusted hops: no location
        ]
        for headers, region in cases:
            with self.subTest(headers=headers):
                self.assertRegion("pkT", "tr-01", region, headers)

    def test_forwarded(self):
        cases = [
            ([("Forwarded", "for=192.0.2.60;proto=https")], EU),
            ([("Forwarded", "for=192.0.2.60")], EU),
            ([("Forwarded", "For=\"198.51.100.7:4711\"")], AP),
            ([("Forwarded", "for=\"[2001:db8:2::7]:4711\";proto=https")], AP),
            ([("Forwarded", "for=203.0.113.5, for=192.0.2.60")], EU),
            ([("Forwarded", "for=198.51.100.7;proto=https, for=127.0.0.3")], AP),
            ([("Forwarded", "proto=https;for=192.0.2.60;by=127.0.0.1")], EU),
        ]
        for headers, region in cases:
            with self.subTest(headers=headers):
                self.assertRegion("pkT", "tr-01", region, headers)

    def test_xff_lines_joined(self):
        # A device's own X-Forwarded-For line comes first; the proxy adds its
        # line after it. The lines count as one list, so the proxy's wins.
        self.assertRegion("pkT", "tr-01", AP, [("X-Forwarded-For", "192.0.2.10"),
                                               ("X-Forwarded-For", "198.51.100.7")])
        self.assertRegion("pkT", "tr-01", EU, [("X-Forwarded-For", "198.51.100.7"),
                                               ("X-Forwarded-For", "192.0.2.10, 127.0.0.9")])

    def test_xff_before_forwarded(self):
        self.assertRegion("pkT", "tr-01", AP, [("Forwarded", "for=192.0.2.60"), ("X-Forwarded-For", "198.51.100.7")])
        self.assertRegion("pkT", "tr-01", EU, [("X-Forwarded-For", "192.0.2.10"), ("Forwarded", "for=198.51.100.7")])

    def test_garbage_falls_back(self):
        garbage = ["garbage", "999.1.1.1", "", " ", ",,,", "unknown", "198.51.100.7 junk", "198.51.100.7:80:90",
                   "[2001:db8:2::1", "1.2.3", "::ffff:999.0.0.1", "\t,\t", "%00", "a" * 4000, ", " * 500,
                   "198.51.100.7, garbage", "_hidden", "0x7f000001"]
        for value in garbage:
            with self.subTest(xff=value[:40]):
                r = self.boot("pkT", "tr-01", xff(value))
                self.assertEqual(self.region_of(r), US)
        for value in ("for=garbage", "for=", "for=\"[zz::1]\"", "for", ";;;", "for=unknown", "by=1.2.3.4"):
            with self.subTest(forwarded=value):
                self.assertRegion("pkT", "tr-01", US, [("Forwarded", value)])
        self.assertTrue(self.h.alive())
        self.assertRegion("pkT", "tr-01", AP, xff("198.51.100.7"))


# ------------------------------------------------------- PROXY protocol

PROXY_CASES = [
    (lambda: proxy_v1("198.51.100.7"), AP, "v1 TCP4"),
    (lambda: proxy_v1("2001:db8:1::5", "::1"), EU, "v1 TCP6"),
    (lambda: proxy_v1("203.0.113.5"), US, "v1 TCP4 US"),
    (lambda: b"PROXY UNKNOWN\r\n", US, "v1 UNKNOWN: the peer"),
    (lambda: b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", US, "v1 UNKNOWN with addresses: the peer"),
    (lambda: proxy_v2("192.0.2.10"), EU, "v2 TCP4"),
    (lambda: proxy_v2("2001:db8:2::7", "::1"), AP, "v2 TCP6"),
    (lambda: proxy_v2(local=True), US, "v2 LOCAL: the peer"),
    (lambda: proxy_v2("198.51.100.7", tlvs=tlv(0x02, b"iot.example.com") + tlv(0x04, b"\x00" * 8)), AP,
     "v2 with TLVs"),
]


class ProxyCases:
    """Shared by the plain and the TLS proxy_protocol listeners."""

    def ctx(self):
        return harness.client_context() if self.tls else None

    def send(self, header, headers=(), split=False, n=1):
        reqs = [sdk("pkX", "px-01", headers) for _ in range(n)]
        return proxied(self.h.public_port, header, reqs, tls=self.ctx(), split=split)

    def test_headers(self):
        for make, region, what in PROXY_CASES:
            with self.subTest(header=what):
                [r] = self.send(make())
                self.assertEqual(self.region_of(r), region, what)

    def test_header_in_pieces(self):
        [r] = self.send(proxy_v1("198.51.100.7"), split=True)
        self.assertEqual(self.region_of(r), AP)
        [r] = self.send(proxy_v2("192.0.2.10"), split=True)
        self.assertEqual(self.region_of(r), EU)

    def test_keep_alive_one_header(self):
        rs = self.send(proxy_v1("198.51.100.7"), n=3)
        self.assertEqual([self.region_of(r) for r in rs], [AP, AP, AP])

    def test_proxy_source_is_the_peer_for_xff(self):
        # Untrusted PROXY source: its X-Forwarded-For is ignored.
        [r] = self.send(proxy_v1("198.51.100.7"), xff("192.0.2.10"))
        self.assertEqual(self.region_of(r), AP)
        [r] = self.send(proxy_v2("198.51.100.7"), [("Forwarded", "for=192.0.2.10")])
        self.assertEqual(self.region_of(r), AP)
        # A trusted PROXY source (another proxy in 127.0.0.0/8): believed.
        [r] = self.send(proxy_v1("127.0.0.9"), xff("192.0.2.10"))
        self.assertEqual(self.region_of(r), EU)
        [r] = self.send(proxy_v2("127.0.0.9"), xff("203.0.113.5, 127.0.0.2"))
        self.assertEqual(self.region_of(r), US)
        # LOCAL: the TCP peer 127.0.0.1 itself, trusted.
        [r] = self.send(proxy_v2(local=True), xff("198.51.100.7"))
        self.assertEqual(self.region_of(r), AP)

    def assertClosed(self, data, what):
        if self.tls:
            # The PROXY header comes before TLS: a bad one ends the
            # connection before any handshake byte.
            got = closed_without_answer(self.h.public_port, data)
        else:
            got = closed_without_answer(self.h.public_port, data + sdk("pkX", "px-01"))
        self.assertEqual(got, b"", "%s: expected the connection closed without an answer" % what)

    def test_malformed_closed(self):
        bad = [
            (b"PROXY TCP4 nonsense\r\n", "v1 nonsense"),
            (b"PROXY TCP4 198.51.100.7 127.0.0.1 5555\r\n", "v1 missing port"),
            (b"PROXY TCP4 198.51.100.700 127.0.0.1 5555 443\r\n", "v1 bad address"),
            (b"PROXY TCP4 2001:db8:1::5 127.0.0.1 5555 443\r\n", "v1 TCP4 with IPv6"),
            (b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 443\r\n", "v1 port out of range"),
            (b"PROXY TCP5 198.51.100.7 127.0.0.1 5555 443\r\n", "v1 unknown family"),
            (b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\n", "v1 LF only"),
            (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "v1 over 107 bytes"),
            (b"proxy TCP4 198.51.100.7 127.0.0.1 5555 443\r\n", "v1 lower case"),
            (proxy_v2("192.0.2.10", raw_ver_cmd=0x11), "v2 wrong version"),
            (proxy_v2("192.0.2.10", raw_ver_cmd=0x2F), "v2 unknown command"),
            (V2_SIG + bytes([0x21, 0x11, 0x00, 0x04]) + b"\x01\x02\x03\x04", "v2 address block too short"),
            (os.urandom(64).replace(b"P", b"p").replace(b"\r", b"r"), "random bytes"),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(32), "a TLS ClientHello"),
        ]
        if not self.tls:
            bad.append((b"", "no header: a plain HTTP request"))
        for data, what in bad:
            with self.subTest(what=what):
                self.assertClosed(data, what)
        self.assertTrue(self.h.alive())
        [r] = self.send(proxy_v1("198.51.100.7"))
        self.assertEqual(self.region_of(r), AP)

    def test_slow_header_times_out(self):
        # A connection that never completes its header is closed (the HTTP
        # timeout, 2 s here), not held open for ever.
        t0 = time.monotonic()
        got = closed_without_answer(self.h.public_port, b"PROXY TCP4 198.51", timeout=15)
        self.assertEqual(got, b"")
        self.assertLess(time.monotonic() - t0, 15)
        [r] = self.send(proxy_v1("198.51.100.7"))
        self.assertEqual(self.region_of(r), AP)

    def test_admin_listener_unaffected(self):
        # admin.proxy_protocol stays false: no header there.
        r = self.h.admin("GET", "/healthz", token=None)
        self.assertEqual(r.status, 200, r)


class ProxyProtocol(ProxyCases, GeoCase):
    config = {"public": {"proxy_protocol": True}, "limits": {"request_timeout_s": 2, "keepalive_timeout_s": 2}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkX", region=EU, instance=None)
        cls.h.register("pkX", ["px-01"])
        cls.nearest("pkX", ["px-01"])


class ProxyProtocolTLS(ProxyCases, GeoCase):
    """PROXY header first, then the TLS handshake, then HTTP."""
    tls = True
    config = {"public": {"proxy_protocol": True}, "limits": {"request_timeout_s": 2, "keepalive_timeout_s": 2}}

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkX", region=EU, instance=None)
        cls.h.register("pkX", ["px-01"])
        cls.nearest("pkX", ["px-01"])

    def test_tls_without_header_closed(self):
        # A client that starts TLS straight away gets no handshake.
        with socket.create_connection(("127.0.0.1", self.h.public_port), timeout=5) as s:
            with self.assertRaises((OSError, harness.ConnectionClosed)):
                t = harness.client_context().wrap_socket(s, server_hostname="localhost")
                t.sendall(sdk("pkX", "px-01"))
                harness.read_response(t)


# -------------------------------------------------------------- explain

class Explain(GeoCase):
    @classmethod
    def prepare(cls):
        h = cls.h
        h.put_product("pkE", region=EU, instance=None)
        h.register("pkE", ["ex-01", "ex-reg", "ex-home"])
        cls.nearest("pkE", ["ex-01"])
        h.distribute(harness.csv_body([["pkE", "ex-reg"]]), "targetRegion=" + AP)

    def check_candidates(self, j, loc):
        cands = j.get("candidates")
        self.assertIsInstance(cands, list, j)
        self.assertEqual([(c.get("region"), c.get("instance")) for c in cands],
                         [(r, instance(r)) for r in CANDS.split(",")], "candidates in batch order")
        for c in cands:
            if loc is None:
                self.assertIsNone(c.get("distanceKm", "absent"), c)
            else:
                self.assertIsInstance(c.get("distanceKm"), (int, float), c)
                want = haversine((loc["latitude"], loc["longitude"]), PLACES[c["region"]])
                self.assertAlmostEqual(c["distanceKm"], want, delta=0.5, msg=c)
        return cands

    def test_located(self):
        j = self.explain("pkE", "ex-01", "198.51.100.7")
        self.assertEqual(j.get("strategy"), "nearest", j)
        self.assertEqual(j.get("level"), "device", j)
        self.assertEqual(j.get("address"), "198.51.100.7", j)
        self.assertLocation(j.get("location"), "JP", "located", PLACES[AP], tol_deg=1e-6)
        cands = self.check_candidates(j, j["location"])
        self.assertLess(cands[2]["distanceKm"], 1, cands)
        self.assertGreater(cands[0]["distanceKm"], 10000, cands)  # Tokyo-Ashburn ~10,900 km
        self.assertGreater(cands[1]["distanceKm"], 9000, cands)   # Tokyo-Frankfurt ~9,350 km
        self.assertEqual(j.get("chosen"), {"region": AP, "instance": instance(AP),
                                           "resources": {"mqtt": {"host": host(AP), "port": 8883}}}, j)
        self.assertRegex(j.get("reason", ""), r"(?i)nearest|locat", j)

    def test_ipv6_and_mapped(self):
        j = self.explain("pkE", "ex-01", "2001:db8:1::5")
        self.assertEqual(j.get("address"), "2001:db8:1::5", j)
        self.assertEqual(j["chosen"]["region"], EU, j)
        self.check_candidates(j, j["location"])
        j = self.explain("pkE", "ex-01", "::ffff:198.51.100.7")
        self.assertEqual(j.get("address"), "198.51.100.7", "an IPv4-mapped address counts as IPv4: %r" % j)
        self.assertEqual(j["chosen"]["region"], AP, j)
        j = self.explain("pkE", "ex-01", "203.0.113.5")
        self.assertEqual(j["chosen"]["region"], US, j)
        self.assertLocation(j.get("location"), "US", "located", PLACES[US], tol_deg=1e-6)

    def test_no_location(self):
        for ip in ("10.0.0.1", "127.0.0.1", "::1", "8.8.8.8", "2001:db8:ff::1"):
            with self.subTest(ip=ip):
                j = self.explain("pkE", "ex-01", ip)
                self.assertIn("location", j)
                self.assertIsNone(j["location"], j)
                self.check_candidates(j, None)
                self.assertEqual(j.get("chosen", {}).get("region"), US, j)
                self.assertEqual(j["chosen"].get("instance"), instance(US), j)
                self.assertRegex(j.get("reason", ""), r"(?i)no location|not (found|located)|first candidate", j)

    def test_bad_ip(self):
        from urllib.parse import quote
        for q in ("ip=nonsense", "ip=", "", "ip=1.2.3.4.5", "ip=256.1.1.1", "ip=198.51.100.7%2F24",
                  "ip=" + quote("198.51.100.7, 192.0.2.1"), "ip=fe80::1%25eth0",
                  "ip=" + "1" * 300, "ipx=198.51.100.7"):
            with self.subTest(query=q):
                r = self.h.admin("GET", "/v1/devices/pkE/ex-01/resolve" + ("?" + q if q else ""))
                self.assertAdminError(r, 400)

    def test_changes_nothing(self):
        before = self.h.device("pkE", "ex-01")
        rec = self.h.device_record("pkE", "ex-01")
        for ip in ("198.51.100.7", "192.0.2.10", "10.0.0.1"):
            self.explain("pkE", "ex-01", ip)
        self.assertEqual(self.h.device("pkE", "ex-01"), before)
        self.assertEqual(self.h.device_record("pkE", "ex-01"), rec)
        self.assertEqual(before["status"], "inactive", before)

    def test_region_and_home(self):
        j = self.explain("pkE", "ex-reg", "192.0.2.10")
        self.assertEqual((j.get("strategy"), j.get("level")), ("region", "device"), j)
        self.assertEqual(j["chosen"]["region"], AP, j)
        j = self.explain("pkE", "ex-home", "198.51.100.7")
        self.assertEqual((j.get("strategy"), j.get("level")), ("region", "home"), j)
        self.assertEqual(j["chosen"]["region"], EU, j)

    def test_unknown_device_and_token(self):
        self.assertAdminError(self.explain("pkE", "ex-nope", "198.51.100.7", status=404), 404, "device_not_found")
        r = self.h.admin("GET", "/v1/devices/pkE/ex-01/resolve?ip=198.51.100.7", token=None)
        self.assertAdminError(r, 401)
        r = self.h.admin("POST", "/v1/devices/pkE/ex-01/resolve?ip=198.51.100.7")
        self.assertIn(r.status, (404, 405), r)

    def test_explain_matches_bootstrap(self):
        for ip in ("198.51.100.7", "192.0.2.10", "203.0.113.5", "2001:db8:2::3", "10.0.0.1"):
            with self.subTest(ip=ip):
                want = self.explain("pkE", "ex-01", ip)["chosen"]["region"]
                self.assertRegion("pkE", "ex-01", want, xff(ip))


# ------------------------------------------------------------- SIGHUP

class Reload(GeoCase):
    """geoip.database is geo.mmdb in the harness folder; the tests rename
    other fixtures over it and send SIGHUP."""
    dbs = []  # set in setUpClass

    @classmethod
    def setUpClass(cls):
        cls.harness_args = {}
        cfg = harness.deep_merge(GEO_CONFIG_BASE, {"geoip": {"database": "geo.mmdb",
                                                              "country_centroids": centroids_path()}})
        cls.h = harness.Harness(name=cls.__name__, config=cfg, regions=geo_regions())
        cls.db = os.path.join(cls.h.dir, "geo.mmdb")
        shutil.copy(fixture("flat.mmdb"), cls.db)
        try:
            cls.h.start()
            cls.h.put_product("pkR", region=EU, instance=None)
            cls.h.register("pkR", ["rl-01"])
            cls.nearest("pkR", ["rl-01"])
        except BaseException:
            cls.h.print_logs()
            cls.h.close()
            raise

    def put(self, data=None, src=None):
        """Atomically replaces geo.mmdb (rename over it)."""
        tmp = self.db + ".new"
        if src is not None:
            shutil.copy(src, tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
        os.rename(tmp, self.db)

    def answers_all(self, ip, region, n=6):
        """N bootstraps on new connections (spread over the threads) all get REGION."""
        return all(self.region_of(self.boot("pkR", "rl-01", xff(ip))) == region for _ in range(n))

    def hup(self, counters, what, pattern=None):
        """SIGHUP, then waits until the reload counters are COUNTERS (and a
        log line matches PATTERN)."""
        offset = len(self.h.daemon_log())
        self.h.signal(signal.SIGHUP)

        def done():
            return self.reloads() == counters and (
                pattern is None or re.search(pattern, self.h.daemon_log()[offset:]))
        try:
            harness.wait_until(done, 5, "reload counters %r%s after SIGHUP (%s)"
                               % (counters, " and a log line matching %r" % pattern if pattern else "", what))
        except TimeoutError as e:
            self.fail("%s; counters now %r; log since SIGHUP: %r"
                      % (e, self.reloads(), self.h.daemon_log()[offset:][-2000:]))

    def reloads(self):
        t = self.h.metrics()
        return (harness.metric_sum(t, "bootstrapd_geo_reloads_total"),
                harness.metric_sum(t, "bootstrapd_geo_reload_failures_total"))

    def test_replace_then_reject(self):
        # flat.mmdb in service: the IPv6 Frankfurt network is located.
        self.assertTrue(self.answers_all("2001:db8:1::5", EU))
        self.assertLocation(self.explain("pkR", "rl-01", "192.0.2.10")["location"], "DE", "located", PLACES[EU])
        ok0, bad0 = self.reloads()
        self.assertIsNotNone(ok0, "/metrics has no bootstrapd_geo_reloads_total")
        self.assertIsNotNone(bad0, "/metrics has no bootstrapd_geo_reload_failures_total")

        # country.mmdb renamed over it: no IPv6 networks, centroids for IPv4.
        self.put(src=fixture("country.mmdb"))
        self.hup((ok0 + 1, bad0), "country.mmdb")
        try:
            harness.wait_until(lambda: self.answers_all("2001:db8:1::5", US), 5,
                               "2001:db8:1::5 to get the first candidate after the reload")
        except TimeoutError as e:
            self.fail(str(e))
        self.assertLocation(self.explain("pkR", "rl-01", "192.0.2.10")["location"], "DE", "country_only",
                            CENTROID["DE"])
        self.assertTrue(self.answers_all("198.51.100.7", AP))
        self.assertEqual(self.reloads(), (ok0 + 1, bad0))

        # Garbage renamed over it: rejected, country.mmdb stays in service.
        self.put(data=b"this is not a MaxMind DB file\n" * 64)
        self.hup((ok0 + 1, bad0 + 1), "garbage", r"(?i)reject")
        self.assertTrue(self.answers_all("2001:db8:1::5", US))
        self.assertTrue(self.answers_all("198.51.100.7", AP))
        self.assertLocation(self.explain("pkR", "rl-01", "192.0.2.10")["location"], "DE", "country_only",
                            CENTROID["DE"])
        self.assertEqual(self.reloads(), (ok0 + 1, bad0 + 1))
        r = self.readyz()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("geoip"), "open", r.body)

        # Truncated (a half-copied file): rejected too.
        with open(fixture("city.mmdb"), "rb") as f:
            city = f.read()
        self.put(data=city[:len(city) // 2])
        self.hup((ok0 + 1, bad0 + 2), "truncated city.mmdb", r"(?i)reject")
        self.assertTrue(self.answers_all("2001:db8:1::5", US))

        # Missing: rejected.
        os.unlink(self.db)
        self.hup((ok0 + 1, bad0 + 3), "missing file", r"(?i)reject")
        self.assertTrue(self.answers_all("2001:db8:1::5", US))
        self.assertEqual(self.reloads(), (ok0 + 1, bad0 + 3))

        # A good file again (city schema): in service.
        self.put(src=fixture("city.mmdb"))
        self.hup((ok0 + 2, bad0 + 3), "city.mmdb")
        try:
            harness.wait_until(lambda: self.answers_all("2001:db8:1::5", EU), 5,
                               "2001:db8:1::5 to be located again after the reload")
        except TimeoutError as e:
            self.fail(str(e))
        self.assertLocation(self.explain("pkR", "rl-01", "192.0.2.10")["location"], "DE", "located", PLACES[EU])
        self.assertEqual(self.reloads(), (ok0 + 2, bad0 + 3))


# ------------------------------------------------- the real GeoLite2 database

REAL_CASES = [("3.120.0.1", EU, "DE"), ("13.112.0.1", AP, "JP"), ("3.208.0.1", US, "US"),
              ("2a05:d014::1", EU, "DE"), ("2406:da14::1", AP, "JP"), ("2600:1f18::1", US, "US")]


class RealCases:
    @classmethod
    def setUpClass(cls):
        missing = [p for p in real_db_paths() if not os.path.exists(p)]
        if missing:
            raise unittest.SkipTest("real GeoIP database not installed (%s missing; tests/run and deploy/run-local "
                                    "fetch it)" % ", ".join(missing))
        cls.dbs = real_db_paths()
        super().setUpClass()

    @classmethod
    def prepare(cls):
        cls.h.put_product("pkW", region=EU, instance=None)
        cls.h.register("pkW", ["real-01", "real-02"])
        cls.nearest("pkW", ["real-01"], "eu-central-1,ap-northeast-1,us-east-1")
        cls.nearest("pkW", ["real-02"], "us-east-1,ap-northeast-1,eu-central-1")

    def test_explain_real(self):
        for ip, region, cc in REAL_CASES:
            with self.subTest(ip=ip):
                for dn in ("real-01", "real-02"):
                    j = self.explain("pkW", dn, ip)
                    loc = j.get("location")
                    self.assertIsInstance(loc, dict, j)
                    self.assertEqual((loc.get("country"), loc.get("source")), (cc, "located"), j)
                    self.assertLess(haversine((loc["latitude"], loc["longitude"]), PLACES[region]), 300, j)
                    self.assertEqual(j["chosen"]["region"], region, j)


class RealDatabase(RealCases, GeoCase):
    def test_through_trusted_proxy(self):
        for ip, region, _ in REAL_CASES:
            with self.subTest(ip=ip):
                self.assertRegion("pkW", "real-01", region, xff(ip))
                self.assertRegion("pkW", "real-02", region, xff(ip))
        self.assertRegion("pkW", "real-01", EU, xff("10.9.9.9"))
        self.assertRegion("pkW", "real-02", US, xff("10.9.9.9"))


class RealDatabaseProxyProtocol(RealCases, GeoCase):
    config = {"public": {"proxy_protocol": True}}

    def test_proxy_v1_and_v2(self):
        for ip, region, _ in REAL_CASES:
            for dn in ("real-01", "real-02"):
                with self.subTest(ip=ip, device=dn):
                    [r] = proxied(self.h.public_port, proxy_v1(ip, "::1" if ":" in ip else "127.0.0.1"),
                                  [sdk("pkW", dn)])
                    self.assertEqual(self.region_of(r), region)
                    [r] = proxied(self.h.public_port, proxy_v2(ip, "::1" if ":" in ip else "127.0.0.1"),
                                  [sdk("pkW", dn)])
                    self.assertEqual(self.region_of(r), region)


def main():
    try:
        fixtures()
    except RuntimeError as e:
        print("SKIP: cannot make the GeoIP fixtures: %s" % e)
        sys.exit(77)
    if not all(os.path.exists(p) for p in real_db_paths()):
        print("NOTE: %s not found: the real-database tests will be skipped" % real_db_paths()[0])
    harness.main()


if __name__ == "__main__":
    main()
