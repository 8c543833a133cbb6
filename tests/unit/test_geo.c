#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "geo.h"
#include "netaddr.h"

#define R_KM 6371.0088
#define PI 3.14159265358979323846

static const struct geo_point frankfurt = { 50.1109, 8.6821 };
static const struct geo_point tokyo = { 35.6762, 139.6503 };
static const struct geo_point ashburn = { 39.0438, -77.4874 };
static const struct geo_point berlin = { 52.5200, 13.4050 };

/* The MaxMind DB fixtures written by tests/geoip/make-fixtures.pl, and the
 * shipped centroid table. When they cannot be made, the tests that need
 * them are skipped with the reason in SKIP_WHY. */
static struct {
	char dir[64];            /* mkdtemp directory, "" if none */
	char centroids[4096];    /* data/country-centroids.csv */
	bool ready;              /* fixtures written */
	const char *skip_why;
	char fail_why[256];      /* the script failed: a real failure */
} fx;

static void expect_near(double got, double want, double tol, const char *what)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("%s: got %.9f, want %.9f (+/- %g)", what, got, want, tol);
}

/* Runs ARGV (with stdout and, when QUIET, stderr to /dev/null); returns the
 * exit status, 127 when it could not be started. */
static int run(char *const argv[], bool quiet)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return 127;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0) {
			dup2(null, STDOUT_FILENO);
			if (quiet)
				dup2(null, STDERR_FILENO);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return 127;
	return WEXITSTATUS(status);
}

static int group_setup(void **state)
{
	const char *root = getenv("BOOTSTRAPD_SOURCE_ROOT");
	char script[4096];
	char *check[] = { "perl", "-MMaxMind::DB::Writer::Tree", "-e", "1", NULL };
	char *make[] = { "perl", script, fx.dir, NULL };
	int rc;

	(void)state;
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/test_geo.XXXXXX");
	if (mkdtemp(fx.dir) == NULL) {
		fx.dir[0] = '\0';
		return -1;
	}
	if (root == NULL || root[0] == '\0') {
		fx.skip_why = "BOOTSTRAPD_SOURCE_ROOT is not set (run through meson test)";
		return 0;
	}
	snprintf(script, sizeof(script), "%s/tests/geoip/make-fixtures.pl", root);
	snprintf(fx.centroids, sizeof(fx.centroids), "%s/data/country-centroids.csv", root);
	rc = run(check, true);
	if (rc == 127) {
		fx.skip_why = "perl is not installed";
		return 0;
	}
	if (rc != 0) {
		fx.skip_why = "perl module MaxMind::DB::Writer::Tree is missing (Debian: libmaxmind-db-writer-perl)";
		return 0;
	}
	rc = run(make, false);
	if (rc != 0)
		snprintf(fx.fail_why, sizeof(fx.fail_why), "%.160s %.40s exited with %d", script, fx.dir, rc);
	else
		fx.ready = true;
	return 0;
}

static int group_teardown(void **state)
{
	DIR *d;
	struct dirent *e;

	(void)state;
	if (fx.dir[0] == '\0')
		return 0;
	d = opendir(fx.dir);
	if (d != NULL) {
		while ((e = readdir(d)) != NULL) {
			char path[512];

			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", fx.dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(fx.dir);
	return 0;
}

#define NEED_FIXTURES() \
	do { \
		if (fx.fail_why[0] != '\0') \
			fail_msg("%s", fx.fail_why); \
		if (!fx.ready) { \
			print_message("skipped: %s\n", fx.skip_why); \
			skip(); \
		} \
	} while (0)

/* fx.dir/NAME, in a rotating static buffer. */
static char *fixture(const char *name)
{
	static char buf[8][256];
	static unsigned next;
	char *p = buf[next++ % 8];

	snprintf(p, sizeof(buf[0]), "%s/%s", fx.dir, name);
	return p;
}

/* Opens the fixture files NAMES (NULL-terminated) with the shipped centroids. */
static struct geo_db *open_names(const char *centroids, const char *first, ...)
{
	char *paths[GEO_DB_MAX];
	size_t n = 0;
	struct geo_db *db;
	char *cause = NULL;
	va_list ap;

	va_start(ap, first);
	for (const char *name = first; name != NULL && n < GEO_DB_MAX; name = va_arg(ap, const char *))
		paths[n++] = fixture(name);
	va_end(ap);
	if (geo_db_open(paths, n, centroids, &db, &cause) != 0)
		fail_msg("geo_db_open: %s", cause != NULL ? cause : "(no cause)");
	assert_null(cause);
	return db;
}

static struct netaddr addr(const char *s)
{
	struct netaddr a;

	if (netaddr_parse(s, strlen(s), &a) != 0)
		fail_msg("fixture address rejected: \"%s\"", s);
	return a;
}

static void expect_lookup(const struct geo_db *db, const char *ip, enum geo_outcome outcome, double lat,
	double lon, const char *country)
{
	struct netaddr a = addr(ip);
	struct geo_location loc;
	enum geo_outcome got;

	memset(&loc, 0x5a, sizeof(loc));
	got = geo_lookup(db, &a, &loc);
	if (got != outcome || loc.outcome != outcome)
		fail_msg("%s: got %s, want %s", ip, geo_outcome_name(got), geo_outcome_name(outcome));
	if (outcome == GEO_NOT_FOUND) {
		assert_string_equal(loc.country, "");
		return;
	}
	/* Exact: the point is what the file holds, not a computation. */
	if (loc.point.latitude != lat || loc.point.longitude != lon)
		fail_msg("%s: got (%.9f, %.9f), want (%.9f, %.9f)", ip, loc.point.latitude, loc.point.longitude,
			lat, lon);
	assert_string_equal(loc.country, country);
}

/* The spherical law of cosines: an independent formula for the same distance
 * (well conditioned away from tiny and antipodal separations). */
static double cosines_km(struct geo_point a, struct geo_point b)
{
	double r = PI / 180.0;
	double c = sin(a.latitude * r) * sin(b.latitude * r)
		+ cos(a.latitude * r) * cos(b.latitude * r) * cos((b.longitude - a.longitude) * r);

	return R_KM * acos(c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c);
}

static void test_distance_same_point(void **state)
{
	(void)state;
	assert_true(geo_distance_km(frankfurt, frankfurt) == 0.0);
	assert_true(geo_distance_km((struct geo_point){ 90, 0 }, (struct geo_point){ 90, 123 }) < 1e-9);
}

static void test_distance_frankfurt_tokyo(void **state)
{
	double d, want;

	(void)state;
	d = geo_distance_km(frankfurt, tokyo);
	want = cosines_km(frankfurt, tokyo);
	expect_near(d, want, want * 0.005, "Frankfurt-Tokyo vs law of cosines");
	if (d < 9250.0 || d > 9450.0)
		fail_msg("Frankfurt-Tokyo: %.1f km is not about 9,330 km", d);
	expect_near(geo_distance_km(tokyo, frankfurt), d, 1e-9, "symmetry");
	want = cosines_km(berlin, frankfurt);
	expect_near(geo_distance_km(berlin, frankfurt), want, want * 0.005, "Berlin-Frankfurt");
}

static void test_distance_antipodes(void **state)
{
	(void)state;
	expect_near(geo_distance_km((struct geo_point){ 0, 0 }, (struct geo_point){ 0, 180 }), PI * R_KM, 1e-6,
		"(0,0)-(0,180)");
	expect_near(geo_distance_km((struct geo_point){ 0, -90 }, (struct geo_point){ 0, 90 }), PI * R_KM, 1e-6,
		"(0,-90)-(0,90)");
	/* Off the axes the degrees do not convert exactly, and haversine is ill
	 * conditioned next to the antipode: within a metre, and never NaN. */
	expect_near(geo_distance_km((struct geo_point){ 35.6762, 139.6503 }, (struct geo_point){ -35.6762, -40.3497 }),
		PI * R_KM, 0.001, "Tokyo and its antipode");
}

static void test_distance_poles(void **state)
{
	(void)state;
	expect_near(geo_distance_km((struct geo_point){ 90, 0 }, (struct geo_point){ -90, 0 }), PI * R_KM, 1e-6,
		"pole to pole");
	expect_near(geo_distance_km((struct geo_point){ 90, 0 }, (struct geo_point){ 0, 77 }), PI * R_KM / 2, 1e-6,
		"pole to equator");
}

static void test_distance_date_line(void **state)
{
	double d;

	(void)state;
	d = geo_distance_km((struct geo_point){ 0, 179 }, (struct geo_point){ 0, -179 });
	expect_near(d, 2.0 * PI * R_KM / 180.0, 1e-6, "(0,179)-(0,-179)");
	if (d < 222.0 || d > 223.0)
		fail_msg("across the date line: %.1f km, not about 222.4 km", d);
	d = geo_distance_km((struct geo_point){ 0, -180 }, (struct geo_point){ 0, 180 });
	assert_true(d < 1e-6);
}

static void test_nearest_berlin(void **state)
{
	const struct geo_point points[] = { tokyo, frankfurt, ashburn };
	double dist[3];

	(void)state;
	assert_int_equal(geo_nearest(berlin, points, 3, dist), 1);
	for (size_t i = 0; i < 3; i++)
		expect_near(dist[i], geo_distance_km(berlin, points[i]), 0.0, "dist_km");
	assert_int_equal(geo_nearest(berlin, points, 3, NULL), 1);
	assert_int_equal(geo_nearest(tokyo, points, 3, NULL), 0);
	assert_int_equal(geo_nearest((struct geo_point){ 40.7128, -74.0060 }, points, 3, NULL), 2);
}

static void test_nearest_tie(void **state)
{
	const struct geo_point origin = { 0, 0 };
	const struct geo_point east = { 0, 10 }, west = { 0, -10 };
	/* 0.000005 degrees is about 0.56 m (a tie); 0.0001 about 11 m (not). */
	const struct geo_point west_tie = { 0, -10.000005 }, west_far = { 0, -10.0001 };
	struct geo_point pts[2];
	double dist[2];

	(void)state;
	pts[0] = east;
	pts[1] = west;
	assert_int_equal(geo_nearest(origin, pts, 2, dist), 0);
	expect_near(dist[0], dist[1], 0.0, "equidistant");
	pts[0] = west;
	pts[1] = east;
	assert_int_equal(geo_nearest(origin, pts, 2, NULL), 0);
	assert_true(geo_nearest(origin, pts, 2, NULL) == 0 && pts[0].longitude == -10);

	pts[0] = west_tie;
	pts[1] = east;
	assert_int_equal(geo_nearest(origin, pts, 2, NULL), 0);
	pts[0] = east;
	pts[1] = west_tie;
	assert_int_equal(geo_nearest(origin, pts, 2, NULL), 0);

	pts[0] = west_far;
	pts[1] = east;
	assert_int_equal(geo_nearest(origin, pts, 2, NULL), 1);
	pts[0] = east;
	pts[1] = west_far;
	assert_int_equal(geo_nearest(origin, pts, 2, NULL), 0);
}

static void test_nearest_single(void **state)
{
	double dist = -1;

	(void)state;
	assert_int_equal(geo_nearest(berlin, &tokyo, 1, &dist), 0);
	expect_near(dist, geo_distance_km(berlin, tokyo), 0.0, "dist_km");
}

static void test_outcome_name(void **state)
{
	(void)state;
	assert_string_equal(geo_outcome_name(GEO_LOCATED), "located");
	assert_string_equal(geo_outcome_name(GEO_COUNTRY_ONLY), "country_only");
	assert_string_equal(geo_outcome_name(GEO_NOT_FOUND), "not_found");
}

static void test_lookup_city(void **state)
{
	struct geo_db *db;

	(void)state;
	NEED_FIXTURES();
	db = open_names(fx.centroids, "city.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "192.0.2.255", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "198.51.100.77", GEO_LOCATED, 35.6762, 139.6503, "JP");
	expect_lookup(db, "203.0.113.9", GEO_LOCATED, 39.0438, -77.4874, "US");
	expect_lookup(db, "[::ffff:203.0.113.9]:443", GEO_LOCATED, 39.0438, -77.4874, "US");
	expect_lookup(db, "2001:db8:1::1", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "2001:db8:1:ffff::2", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "2001:db8:2::42", GEO_LOCATED, 35.6762, 139.6503, "JP");
	/* Only registered_country: its centroid (data/country-centroids.csv). */
	expect_lookup(db, "2001:db8:3::1", GEO_COUNTRY_ONLY, 37.09024, -95.712891, "US");
	geo_db_unref(db);
}

static void test_lookup_flat(void **state)
{
	struct geo_db *db;

	(void)state;
	NEED_FIXTURES();
	/* The flat files store coordinates as float, like ip-location-db's. */
	db = open_names(fx.centroids, "flat.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_LOCATED, 50.1109f, 8.6821f, "DE");
	expect_lookup(db, "198.51.100.77", GEO_LOCATED, 35.6762f, 139.6503f, "JP");
	expect_lookup(db, "203.0.113.9", GEO_LOCATED, 39.0438f, -77.4874f, "US");
	expect_lookup(db, "2001:db8:1::1", GEO_LOCATED, 50.1109f, 8.6821f, "DE");
	expect_lookup(db, "2001:db8:2::42", GEO_LOCATED, 35.6762f, 139.6503f, "JP");
	expect_lookup(db, "2001:db8:3::1", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);
}

static void test_lookup_country_only(void **state)
{
	struct geo_db *db;

	(void)state;
	NEED_FIXTURES();
	db = open_names(fx.centroids, "country.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_COUNTRY_ONLY, 51.165691, 10.451526, "DE");
	expect_lookup(db, "198.51.100.1", GEO_COUNTRY_ONLY, 36.204824, 138.252924, "JP");
	expect_lookup(db, "203.0.113.1", GEO_COUNTRY_ONLY, 37.09024, -95.712891, "US");
	/* "NA" is Namibia, not a missing value. */
	expect_lookup(db, "2001:db8:5::1", GEO_COUNTRY_ONLY, -22.95764, 18.49041, "NA");
	/* A code the centroid table does not know gives nothing usable. */
	expect_lookup(db, "2001:db8:4::1", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);

	/* Without a centroid table a country alone locates nothing... */
	db = open_names(NULL, "country.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);
	/* ...but coordinates still do. */
	db = open_names(NULL, "city.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "2001:db8:3::1", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);
}

static void test_lookup_not_found(void **state)
{
	static const char *const files[] = { "city.mmdb", "flat.mmdb", "country.mmdb", "ipv4.mmdb" };
	static const char *const ips[] = { "10.0.0.1", "127.0.0.1", "8.8.8.8", "192.0.3.1", "0.0.0.0",
		"255.255.255.255", "::1", "::", "2001:db8:9::1", "fe80::1" };
	struct netaddr a = addr("192.0.2.1");
	struct geo_location loc;

	(void)state;
	NEED_FIXTURES();
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		struct geo_db *db = open_names(fx.centroids, files[f], NULL);

		for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++)
			expect_lookup(db, ips[i], GEO_NOT_FOUND, 0, 0, "");
		geo_db_unref(db);
	}
	/* No database at all (no geoip section). */
	assert_int_equal(geo_lookup(NULL, &a, &loc), GEO_NOT_FOUND);
	assert_int_equal(loc.outcome, GEO_NOT_FOUND);
}

/* geoip.database is looked up in order until one file has the address: the
 * first file with usable data for it decides, even if a later one knows more. */
static void test_lookup_order(void **state)
{
	struct geo_db *db;

	(void)state;
	NEED_FIXTURES();
	db = open_names(fx.centroids, "country.mmdb", "city.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_COUNTRY_ONLY, 51.165691, 10.451526, "DE");
	expect_lookup(db, "203.0.113.1", GEO_COUNTRY_ONLY, 37.09024, -95.712891, "US");
	/* Not in country.mmdb: city.mmdb answers. */
	expect_lookup(db, "2001:db8:2::1", GEO_LOCATED, 35.6762, 139.6503, "JP");
	/* In country.mmdb but with a code the centroid table does not know: not
	 * usable, so passed over to the next file. */
	expect_lookup(db, "2001:db8:4::1", GEO_LOCATED, 39.0438, -77.4874, "US");
	expect_lookup(db, "10.1.2.3", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);

	db = open_names(fx.centroids, "city.mmdb", "country.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "2001:db8:5::1", GEO_COUNTRY_ONLY, -22.95764, 18.49041, "NA");
	geo_db_unref(db);

	db = open_names(fx.centroids, "flat.mmdb", "city.mmdb", NULL);
	expect_lookup(db, "198.51.100.1", GEO_LOCATED, 35.6762f, 139.6503f, "JP");
	expect_lookup(db, "2001:db8:3::1", GEO_COUNTRY_ONLY, 37.09024, -95.712891, "US");
	geo_db_unref(db);
}

/* The real deployment pairs an IPv4-only file with an IPv6 one. An IPv6
 * address cannot be looked up in the IPv4 file (libmaxminddb reports an
 * error) and goes on to the next; an IPv4 address found in an IPv6 file goes
 * through its IPv4 subtree (::/96), as test_lookup_city shows. */
static void test_lookup_ipv4_only_file(void **state)
{
	struct geo_db *db;

	(void)state;
	NEED_FIXTURES();
	db = open_names(fx.centroids, "ipv4.mmdb", "country.mmdb", NULL);
	expect_lookup(db, "192.0.2.1", GEO_LOCATED, 50.1109f, 8.6821f, "DE");
	expect_lookup(db, "198.51.100.1", GEO_COUNTRY_ONLY, 36.204824, 138.252924, "JP");
	expect_lookup(db, "2001:db8:1::1", GEO_NOT_FOUND, 0, 0, "");
	expect_lookup(db, "2001:db8:5::1", GEO_COUNTRY_ONLY, -22.95764, 18.49041, "NA");
	geo_db_unref(db);

	db = open_names(fx.centroids, "ipv4.mmdb", "city.mmdb", NULL);
	expect_lookup(db, "2001:db8:1::1", GEO_LOCATED, 50.1109, 8.6821, "DE");
	expect_lookup(db, "203.0.113.5", GEO_LOCATED, 39.0438, -77.4874, "US");
	geo_db_unref(db);

	db = open_names(fx.centroids, "ipv4.mmdb", NULL);
	expect_lookup(db, "2001:db8:1::1", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		fail_msg("%s: cannot create", path);
	fputs(text, f);
	fclose(f);
}

static void expect_open_error(char **paths, size_t n, const char *centroids, const char *want1,
	const char *want2)
{
	struct geo_db *db = (struct geo_db *)&db;
	char *cause = NULL;

	if (geo_db_open(paths, n, centroids, &db, &cause) != -1)
		fail_msg("opened, want an error with \"%s\"", want1);
	assert_null(db);
	assert_non_null(cause);
	if (strstr(cause, want1) == NULL || (want2 != NULL && strstr(cause, want2) == NULL))
		fail_msg("cause \"%s\" does not name \"%s\"%s%s", cause, want1, want2 != NULL ? " and " : "",
			want2 != NULL ? want2 : "");
	free(cause);
}

static void test_open_errors(void **state)
{
	char *missing = fixture("no-such.mmdb");
	char *text = fixture("not-an.mmdb");
	char *paths[GEO_DB_MAX + 1] = { NULL };

	(void)state;
	expect_open_error(&missing, 1, NULL, missing, "No such file");
	write_file(text, "country_code,latitude,longitude,name\nDE,51,10,Germany\n");
	expect_open_error(&text, 1, NULL, text, NULL);
	expect_open_error(paths, 0, NULL, "1 to 8", NULL);
	for (size_t i = 0; i <= GEO_DB_MAX; i++)
		paths[i] = text;
	expect_open_error(paths, GEO_DB_MAX + 1, NULL, "1 to 8", NULL);
	paths[0] = "";
	expect_open_error(paths, 1, NULL, "empty path", NULL);
	if (fx.ready) {
		/* A good file first, then a bad one: the bad one is named. */
		paths[0] = fixture("city.mmdb");
		paths[1] = missing;
		expect_open_error(paths, 2, NULL, missing, NULL);
	}
}

static void test_open_bad_centroids(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "", "empty file" },
		{ "code,lat,lon,name\nDE,51,10,Germany\n", ":1: header" },
		{ "country_code,latitude,longitude\nDE,51,10\n", ":1: header" },
		{ "country_code,latitude,longitude,name\nDE,51,10\n", ":2: expected 4 fields" },
		{ "country_code,latitude,longitude,name\nDE,51,10,Germany\nJP\n", ":3: expected 4 fields" },
		{ "country_code,latitude,longitude,name\nDE,91,10,Germany\n", ":2: latitude" },
		{ "country_code,latitude,longitude,name\nDE,-90.5,10,Germany\n", ":2: latitude" },
		{ "country_code,latitude,longitude,name\nDE,51,180.1,Germany\n", ":2: longitude" },
		{ "country_code,latitude,longitude,name\nDE,51,ten,Germany\n", ":2: longitude" },
		{ "country_code,latitude,longitude,name\nDE,,10,Germany\n", ":2: latitude" },
		{ "country_code,latitude,longitude,name\nDE, 51,10,Germany\n", ":2: latitude" },
		{ "country_code,latitude,longitude,name\nDE,nan,10,Germany\n", ":2: latitude" },
		{ "country_code,latitude,longitude,name\nDE,51,10,\n", ":2: empty name" },
		{ "country_code,latitude,longitude,name\nde,51,10,Germany\n", ":2: country_code" },
		{ "country_code,latitude,longitude,name\nDEU,51,10,Germany\n", ":2: country_code" },
		{ "country_code,latitude,longitude,name\n,51,10,Germany\n", ":2: country_code" },
		{ "country_code,latitude,longitude,name\nDE,51,10,Germany\nDE,52,11,Germany\n", ":3: duplicate" },
		{ "country_code,latitude,longitude,name\nDE,51,10,Germany\n\nJP,36,138,Japan\n", ":3: empty line" },
	};
	char *csv = fixture("bad-centroids.csv");
	char *good = fixture("good-centroids.csv");
	char *missing = fixture("no-such.csv");
	char *paths[1];
	struct geo_db *db;
	char *cause = NULL;

	(void)state;
	NEED_FIXTURES();
	paths[0] = fixture("country.mmdb");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_file(csv, cases[i].text);
		expect_open_error(paths, 1, csv, csv, cases[i].want);
	}
	expect_open_error(paths, 1, missing, missing, "No such file");

	/* Accepted: CRLF lines, a name with commas, no final newline, extremes. */
	write_file(good, "country_code,latitude,longitude,name\r\nNA,-22.95764,18.49041,Namibia\r\n"
		"KR,35.907757,127.766922,Korea, Republic of\nAQ,-90,180,Antarctica\nFJ,-17.7,-180,Fiji");
	paths[0] = fixture("country.mmdb");
	if (geo_db_open(paths, 1, good, &db, &cause) != 0)
		fail_msg("good centroids rejected: %s", cause);
	expect_lookup(db, "2001:db8:5::1", GEO_COUNTRY_ONLY, -22.95764, 18.49041, "NA");
	expect_lookup(db, "192.0.2.1", GEO_NOT_FOUND, 0, 0, "");
	geo_db_unref(db);
}

static void test_refcount(void **state)
{
	struct geo_db *db, *r1, *r2;

	(void)state;
	assert_null(geo_db_ref(NULL));
	geo_db_unref(NULL);
	NEED_FIXTURES();
	db = open_names(fx.centroids, "city.mmdb", "flat.mmdb", "country.mmdb", NULL);
	r1 = geo_db_ref(db);
	r2 = geo_db_ref(db);
	assert_ptr_equal(r1, db);
	assert_ptr_equal(r2, db);
	geo_db_unref(db);
	expect_lookup(r1, "192.0.2.1", GEO_LOCATED, 50.1109, 8.6821, "DE");
	geo_db_unref(r1);
	expect_lookup(r2, "2001:db8:2::1", GEO_LOCATED, 35.6762, 139.6503, "JP");
	geo_db_unref(r2); /* the last reference: freed (ASan/valgrind check) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_distance_same_point),
		cmocka_unit_test(test_distance_frankfurt_tokyo),
		cmocka_unit_test(test_distance_antipodes),
		cmocka_unit_test(test_distance_poles),
		cmocka_unit_test(test_distance_date_line),
		cmocka_unit_test(test_nearest_berlin),
		cmocka_unit_test(test_nearest_tie),
		cmocka_unit_test(test_nearest_single),
		cmocka_unit_test(test_outcome_name),
		cmocka_unit_test(test_lookup_city),
		cmocka_unit_test(test_lookup_flat),
		cmocka_unit_test(test_lookup_country_only),
		cmocka_unit_test(test_lookup_not_found),
		cmocka_unit_test(test_lookup_order),
		cmocka_unit_test(test_lookup_ipv4_only_file),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_open_bad_centroids),
		cmocka_unit_test(test_refcount),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
