/* geo: MaxMind DB lookups (GeoIP2 City and flat ip-location-db schemas), the
 * country centroid table, and great-circle distances (SPEC §4, §6). An open
 * geo_db is immutable and shared between threads by reference counting. */
#include "geo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <maxminddb.h>

#define GEO_EARTH_RADIUS_KM 6371.0088
#define GEO_PI 3.14159265358979323846
#define GEO_TIE_KM 0.001 /* distances this close are equal: lower index wins */
#define GEO_CENTROIDS_HEADER "country_code,latitude,longitude,name"

struct geo_centroid {
	bool present;
	struct geo_point point;
};

struct geo_db {
	int refs;
	size_t n;                                 /* databases opened */
	MMDB_s mmdb[GEO_DB_MAX];
	struct geo_centroid centroids[26 * 26];   /* indexed by geo_code_index */
};

/* MMDB_get_value() allocates its path array; the lookup path must not, so
 * the paths are spelled out for MMDB_aget_value(). */
static const char *const geo_path_location_lat[] = { "location", "latitude", NULL };
static const char *const geo_path_location_lon[] = { "location", "longitude", NULL };
static const char *const geo_path_country[] = { "country", "iso_code", NULL };
static const char *const geo_path_registered[] = { "registered_country", "iso_code", NULL };
static const char *const geo_path_flat_lat[] = { "latitude", NULL };
static const char *const geo_path_flat_lon[] = { "longitude", NULL };
static const char *const geo_path_flat_country[] = { "country_code", NULL };

static int geo_fail(char **cause, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int geo_fail(char **cause, const char *fmt, ...)
{
	va_list ap;

	if (cause == NULL)
		return -1;
	va_start(ap, fmt);
	if (vasprintf(cause, fmt, ap) < 0)
		*cause = NULL;
	va_end(ap);
	return -1;
}

/* The slot of a two-letter code in the centroid table, or -1 when S is not
 * two ASCII letters. Lower case is accepted from databases. */
static int geo_code_index(const char *s, size_t len)
{
	int idx = 0;

	if (len != 2)
		return -1;
	for (size_t i = 0; i < 2; i++) {
		int c = (unsigned char)s[i];

		if (c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		if (c < 'A' || c > 'Z')
			return -1;
		idx = idx * 26 + (c - 'A');
	}
	return idx;
}

/* Parses a plain decimal number filling all of S (no spaces, hex, inf or nan). */
static int geo_parse_degrees(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	if (*s == '\0' || strspn(s, "0123456789+-.eE") != strlen(s))
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Parses one data row of the centroid CSV (LINE without its newline). */
static int geo_centroid_row(struct geo_db *db, const char *path, size_t lineno, char *line, char **cause)
{
	char *field[4];
	struct geo_point p;
	int idx;

	field[0] = line;
	for (size_t i = 1; i < 4; i++) {
		char *comma = strchr(field[i - 1], ',');

		if (comma == NULL)
			return geo_fail(cause, "%s:%zu: expected 4 fields (country_code,latitude,longitude,name), found %zu",
				path, lineno, i);
		*comma = '\0';
		field[i] = comma + 1;
	}
	idx = strlen(field[0]) == 2 && field[0][0] >= 'A' && field[0][0] <= 'Z' && field[0][1] >= 'A'
			&& field[0][1] <= 'Z' ? geo_code_index(field[0], 2) : -1;
	if (idx < 0)
		return geo_fail(cause, "%s:%zu: country_code \"%.16s\" is not two upper-case letters", path, lineno,
			field[0]);
	if (db->centroids[idx].present)
		return geo_fail(cause, "%s:%zu: duplicate country_code %s", path, lineno, field[0]);
	if (geo_parse_degrees(field[1], -90.0, 90.0, &p.latitude) != 0)
		return geo_fail(cause, "%s:%zu: latitude \"%.32s\" is not a number in [-90, 90]", path, lineno,
			field[1]);
	if (geo_parse_degrees(field[2], -180.0, 180.0, &p.longitude) != 0)
		return geo_fail(cause, "%s:%zu: longitude \"%.32s\" is not a number in [-180, 180]", path, lineno,
			field[2]);
	if (field[3][0] == '\0')
		return geo_fail(cause, "%s:%zu: empty name", path, lineno);
	db->centroids[idx].present = true;
	db->centroids[idx].point = p;
	return 0;
}

static int geo_load_centroids(struct geo_db *db, const char *path, char **cause)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	bool blank = false;
	int rc = -1;

	f = fopen(path, "r");
	if (f == NULL)
		return geo_fail(cause, "%s: cannot open: %s", path, strerror(errno));
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		if ((size_t)len != strlen(line)) {
			geo_fail(cause, "%s:%zu: NUL byte in line", path, lineno);
			goto out;
		}
		if (blank) {
			geo_fail(cause, "%s:%zu: empty line", path, lineno - 1);
			goto out;
		}
		if (len == 0) {
			/* Only allowed at the end of the file. */
			blank = true;
			continue;
		}
		if (lineno == 1) {
			if (strcmp(line, GEO_CENTROIDS_HEADER) != 0) {
				geo_fail(cause, "%s:1: header must be \"" GEO_CENTROIDS_HEADER "\"", path);
				goto out;
			}
			continue;
		}
		if (geo_centroid_row(db, path, lineno, line, cause) != 0)
			goto out;
	}
	if (ferror(f)) {
		geo_fail(cause, "%s: read error: %s", path, strerror(errno));
		goto out;
	}
	if (lineno == 0 || (lineno == 1 && blank)) {
		geo_fail(cause, "%s: empty file (expected the header \"" GEO_CENTROIDS_HEADER "\")", path);
		goto out;
	}
	rc = 0;
out:
	free(line);
	fclose(f);
	return rc;
}

static void geo_db_free(struct geo_db *db)
{
	if (db == NULL)
		return;
	for (size_t i = db->n; i > 0; i--)
		MMDB_close(&db->mmdb[i - 1]);
	free(db);
}

int geo_db_open(char *const *paths, size_t n, const char *centroids, struct geo_db **out, char **cause)
{
	struct geo_db *db = NULL;
	int rc = -1;

	*out = NULL;
	if (cause != NULL)
		*cause = NULL;
	if (n == 0 || n > GEO_DB_MAX) {
		geo_fail(cause, "geoip: %zu database files given (1 to %d allowed)", n, GEO_DB_MAX);
		goto out;
	}
	db = calloc(1, sizeof(*db));
	if (db == NULL) {
		geo_fail(cause, "geoip: out of memory");
		goto out;
	}
	db->refs = 1;
	for (size_t i = 0; i < n; i++) {
		int status, err;

		if (paths[i] == NULL || paths[i][0] == '\0') {
			geo_fail(cause, "geoip: database %zu: empty path", i + 1);
			goto out;
		}
		errno = 0;
		status = MMDB_open(paths[i], MMDB_MODE_MMAP, &db->mmdb[i]);
		err = errno;
		if (status != MMDB_SUCCESS) {
			if ((status == MMDB_FILE_OPEN_ERROR || status == MMDB_IO_ERROR) && err != 0)
				geo_fail(cause, "%s: %s: %s", paths[i], MMDB_strerror(status), strerror(err));
			else
				geo_fail(cause, "%s: %s", paths[i], MMDB_strerror(status));
			goto out;
		}
		db->n = i + 1;
	}
	if (centroids != NULL && geo_load_centroids(db, centroids, cause) != 0)
		goto out;
	*out = db;
	db = NULL;
	rc = 0;
out:
	geo_db_free(db);
	return rc;
}

struct geo_db *geo_db_ref(struct geo_db *db)
{
	if (db != NULL)
		__atomic_fetch_add(&db->refs, 1, __ATOMIC_RELAXED);
	return db;
}

void geo_db_unref(struct geo_db *db)
{
	if (db != NULL && __atomic_sub_fetch(&db->refs, 1, __ATOMIC_ACQ_REL) == 0)
		geo_db_free(db);
}

/* A coordinate stored as double or float (the ip-location-db files use float). */
static bool geo_entry_number(MMDB_entry_s *entry, const char *const *path, double *out)
{
	MMDB_entry_data_s data;

	if (MMDB_aget_value(entry, &data, path) != MMDB_SUCCESS || !data.has_data)
		return false;
	switch (data.type) {
	case MMDB_DATA_TYPE_DOUBLE:
		*out = data.double_value;
		break;
	case MMDB_DATA_TYPE_FLOAT:
		*out = (double)data.float_value;
		break;
	default:
		return false;
	}
	return isfinite(*out);
}

static bool geo_entry_point(MMDB_entry_s *entry, const char *const *lat_path, const char *const *lon_path,
	struct geo_point *out)
{
	struct geo_point p;

	if (!geo_entry_number(entry, lat_path, &p.latitude) || !geo_entry_number(entry, lon_path, &p.longitude))
		return false;
	if (p.latitude < -90.0 || p.latitude > 90.0 || p.longitude < -180.0 || p.longitude > 180.0)
		return false;
	*out = p;
	return true;
}

/* A two-letter country code at PATH; returns its centroid slot or -1. */
static int geo_entry_country(MMDB_entry_s *entry, const char *const *path)
{
	MMDB_entry_data_s data;

	if (MMDB_aget_value(entry, &data, path) != MMDB_SUCCESS || !data.has_data
			|| data.type != MMDB_DATA_TYPE_UTF8_STRING)
		return -1;
	return geo_code_index(data.utf8_string, data.data_size);
}

/* Reads one database entry into OUT; false when it has neither coordinates
 * nor a country the centroid table knows. */
static bool geo_entry_locate(const struct geo_db *db, MMDB_entry_s *entry, struct geo_location *out)
{
	struct geo_point p;
	bool located;
	int idx;

	located = geo_entry_point(entry, geo_path_location_lat, geo_path_location_lon, &p)
		|| geo_entry_point(entry, geo_path_flat_lat, geo_path_flat_lon, &p);
	idx = geo_entry_country(entry, geo_path_country);
	if (idx < 0)
		idx = geo_entry_country(entry, geo_path_registered);
	if (idx < 0)
		idx = geo_entry_country(entry, geo_path_flat_country);
	if (located) {
		out->outcome = GEO_LOCATED;
		out->point = p;
	} else if (idx >= 0 && db->centroids[idx].present) {
		out->outcome = GEO_COUNTRY_ONLY;
		out->point = db->centroids[idx].point;
	} else {
		return false;
	}
	if (idx >= 0) {
		out->country[0] = (char)('A' + idx / 26);
		out->country[1] = (char)('A' + idx % 26);
		out->country[2] = '\0';
	}
	return true;
}

enum geo_outcome geo_lookup(const struct geo_db *db, const struct netaddr *a, struct geo_location *out)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in sin;
		struct sockaddr_in6 sin6;
	} sa;

	memset(out, 0, sizeof(*out));
	out->outcome = GEO_NOT_FOUND;
	if (db == NULL || a == NULL)
		return GEO_NOT_FOUND;
	memset(&sa, 0, sizeof(sa));
	if (a->family == AF_INET) {
		sa.sin.sin_family = AF_INET;
		memcpy(&sa.sin.sin_addr, a->bytes, 4);
	} else if (a->family == AF_INET6) {
		sa.sin6.sin6_family = AF_INET6;
		memcpy(&sa.sin6.sin6_addr, a->bytes, 16);
	} else {
		return GEO_NOT_FOUND;
	}
	for (size_t i = 0; i < db->n; i++) {
		MMDB_lookup_result_s res;
		int err = MMDB_SUCCESS;

		/* An IPv6 address in an IPv4-only file is an error, not a miss:
		 * either way this file does not have the address. */
		res = MMDB_lookup_sockaddr(&db->mmdb[i], &sa.sa, &err);
		if (err != MMDB_SUCCESS || !res.found_entry)
			continue;
		if (geo_entry_locate(db, &res.entry, out))
			return out->outcome;
	}
	memset(out, 0, sizeof(*out));
	out->outcome = GEO_NOT_FOUND;
	return GEO_NOT_FOUND;
}

double geo_distance_km(struct geo_point a, struct geo_point b)
{
	const double rad = GEO_PI / 180.0;
	double dlat = (b.latitude - a.latitude) * rad;
	double dlon = (b.longitude - a.longitude) * rad;
	double s1 = sin(dlat / 2.0), s2 = sin(dlon / 2.0);
	double h = s1 * s1 + cos(a.latitude * rad) * cos(b.latitude * rad) * s2 * s2;

	/* Rounding can push h just outside [0, 1] near antipodes. atan2 stays
	 * accurate where asin(sqrt(h)) loses digits as h approaches 1. */
	if (h < 0.0)
		h = 0.0;
	if (h > 1.0)
		h = 1.0;
	return 2.0 * GEO_EARTH_RADIUS_KM * atan2(sqrt(h), sqrt(1.0 - h));
}

size_t geo_nearest(struct geo_point from, const struct geo_point *points, size_t n, double *dist_km)
{
	double best = INFINITY;

	for (size_t i = 0; i < n; i++) {
		double d = geo_distance_km(from, points[i]);

		if (dist_km != NULL)
			dist_km[i] = d;
		if (d < best)
			best = d;
	}
	/* The lowest index within the tie margin of the minimum, so the pick does
	 * not depend on the order in which near-equal distances were seen. */
	for (size_t i = 0; i < n; i++) {
		double d = dist_km != NULL ? dist_km[i] : geo_distance_km(from, points[i]);

		if (d <= best + GEO_TIE_KM)
			return i;
	}
	return 0;
}

const char *geo_outcome_name(enum geo_outcome o)
{
	switch (o) {
	case GEO_LOCATED:
		return "located";
	case GEO_COUNTRY_ONLY:
		return "country_only";
	case GEO_NOT_FOUND:
		return "not_found";
	}
	return "unknown";
}
