/* geo: where an address is, and which candidate is nearest to it (SPEC §4,
 * §6). MaxMind DB files in either schema (GeoIP2/GeoLite2 City:
 * location.latitude/longitude and country.iso_code; the flat ip-location-db
 * one: latitude, longitude, country_code), looked up in order until one has
 * the address; a country without coordinates falls back to the country
 * centroid table. An open database is immutable and reference counted: SIGHUP
 * opens a new one and swaps it. */
#ifndef BOOTSTRAPD_GEO_H
#define BOOTSTRAPD_GEO_H

#include <stddef.h>

#include "netaddr.h"

struct geo_point {
	double latitude, longitude; /* degrees, WGS84 */
};

enum geo_outcome {
	GEO_LOCATED,      /* the database has coordinates for the address */
	GEO_COUNTRY_ONLY, /* only a country: its centroid is used */
	GEO_NOT_FOUND,    /* no database has it (private, loopback, unknown) */
};

struct geo_location {
	enum geo_outcome outcome;
	struct geo_point point; /* set unless GEO_NOT_FOUND */
	char country[3];        /* ISO 3166-1 alpha-2, "" when unknown */
};

struct geo_db;

#define GEO_DB_MAX 8 /* database files per geo_db */

/* Opens the N (1..GEO_DB_MAX) database files at PATHS (mmapped) and, when
 * CENTROIDS is not NULL, the country centroid CSV
 * (country_code,latitude,longitude,name). *OUT holds one reference. On error
 * returns -1 with *cause (caller frees) naming the file (and line) and the
 * reason. */
int geo_db_open(char *const *paths, size_t n, const char *centroids, struct geo_db **out, char **cause)
	__attribute__((warn_unused_result));
/* Atomic reference counting: databases are shared between threads. */
struct geo_db *geo_db_ref(struct geo_db *db);
void geo_db_unref(struct geo_db *db);

/* Locates A: the first file with usable data for A decides (coordinates, else
 * a country the centroid table knows; a file without either for A is passed
 * over). DB may be NULL (no GeoIP). Fills OUT and returns OUT->outcome.
 * Thread-safe; no allocation. */
enum geo_outcome geo_lookup(const struct geo_db *db, const struct netaddr *a, struct geo_location *out);

/* Great-circle distance in km (haversine, mean Earth radius 6371.0088 km). */
double geo_distance_km(struct geo_point a, struct geo_point b);

/* The index of the point nearest to FROM among N (N >= 1); equal distances
 * (within 1 m) go to the lower index. Fills DIST_KM[i] when not NULL. */
size_t geo_nearest(struct geo_point from, const struct geo_point *points, size_t n, double *dist_km);

const char *geo_outcome_name(enum geo_outcome o); /* "located", "country_only", "not_found" */

#endif
