/* nearest: which of a batch's candidates a client address gets (SPEC §4):
 * the one nearest to the address's GeoIP location, or the first candidate
 * when the address has no location. Shared by the device endpoint and the
 * admin API's explain call. Pure (the GeoIP database is read-only memory). */
#ifndef BOOTSTRAPD_NEAREST_H
#define BOOTSTRAPD_NEAREST_H

#include <stdbool.h>
#include <stddef.h>

#include "catalog.h"
#include "geo.h"
#include "netaddr.h"
#include "schema.h"

struct nearest_candidate {
	const struct catalog_region *region;     /* borrowed from the catalog */
	const struct catalog_instance *instance;
	double distance_km;                      /* < 0 when not located */
};

struct nearest_result {
	bool looked_up;                 /* a GeoIP lookup was made */
	struct geo_location location;   /* when looked_up */
	struct nearest_candidate candidates[SCHEMA_TARGETS_MAX];
	size_t ncandidates;             /* those of the batch in the catalog, in batch order */
	size_t chosen;                  /* index into candidates */
};

/* Resolves the targets of B against CAT (targets the catalog no longer has
 * are left out) and picks one for ADDR. GEO may be NULL (no GeoIP). A single
 * candidate is taken without a lookup unless ALWAYS_LOCATE. Returns 0, or -1
 * when no target is in the catalog. */
int nearest_choose(const struct catalog *cat, const struct geo_db *geo, const struct schema_batch *b,
	const struct netaddr *addr, bool always_locate, struct nearest_result *out)
	__attribute__((warn_unused_result));

#endif
