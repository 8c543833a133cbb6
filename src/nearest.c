#include "nearest.h"

#include <string.h>

int nearest_choose(const struct catalog *cat, const struct geo_db *geo, const struct schema_batch *b,
	const struct netaddr *addr, bool always_locate, struct nearest_result *out)
{
	struct geo_point points[SCHEMA_TARGETS_MAX];
	double dist[SCHEMA_TARGETS_MAX];
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < b->ntargets; i++) {
		const struct catalog_region *r = catalog_region(cat, b->targets[i].region);
		const struct catalog_instance *inst = r ? catalog_instance(r, b->targets[i].instance) : NULL;

		if (inst == NULL)
			continue;
		out->candidates[n].region = r;
		out->candidates[n].instance = inst;
		out->candidates[n].distance_km = -1;
		points[n].latitude = r->latitude;
		points[n].longitude = r->longitude;
		n++;
	}
	out->ncandidates = n;
	if (n == 0)
		return -1;
	if (geo == NULL || addr == NULL || (n == 1 && !always_locate))
		return 0;
	out->looked_up = true;
	if (geo_lookup(geo, addr, &out->location) == GEO_NOT_FOUND)
		return 0;
	out->chosen = geo_nearest(out->location.point, points, n, dist);
	for (size_t i = 0; i < n; i++)
		out->candidates[i].distance_km = dist[i];
	return 0;
}
