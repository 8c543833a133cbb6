/* The cost of locating an address and picking the nearest of three
 * candidates, as the device endpoint does for a `nearest` device.
 *
 *   build/tests/bench_geo DB.mmdb [DB2.mmdb ...]
 *
 * Looks up 1,000,000 pseudo-random public IPv4 addresses (a fixed seed, so
 * runs compare) and prints the time per lookup+selection and the outcomes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "geo.h"

#define BENCH_N 1000000

static uint32_t bench_next(uint32_t *s)
{
	/* xorshift32 */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

int main(int argc, char **argv)
{
	const struct geo_point candidates[] = {
		{ 39.0438, -77.4874 }, /* Ashburn */
		{ 50.1109, 8.6821 },   /* Frankfurt */
		{ 35.6762, 139.6503 }, /* Tokyo */
	};
	size_t outcomes[3] = { 0 }, picks[3] = { 0 };
	struct geo_db *db = NULL;
	struct timespec t0, t1;
	char *cause = NULL;
	uint32_t seed = 2463534242u;

	if (argc < 2) {
		fprintf(stderr, "usage: bench_geo DB.mmdb [DB2.mmdb ...]\n");
		return 2;
	}
	if (geo_db_open(argv + 1, (size_t)(argc - 1), NULL, &db, &cause) < 0) {
		fprintf(stderr, "bench_geo: %s\n", cause);
		free(cause);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < BENCH_N; i++) {
		struct netaddr a = { .family = AF_INET };
		struct geo_location loc;
		uint32_t v = bench_next(&seed);

		a.bytes[0] = (unsigned char)(1 + (v >> 24) % 223); /* 1..223: unicast */
		a.bytes[1] = (unsigned char)(v >> 16);
		a.bytes[2] = (unsigned char)(v >> 8);
		a.bytes[3] = (unsigned char)v;
		outcomes[geo_lookup(db, &a, &loc)]++;
		if (loc.outcome != GEO_NOT_FOUND)
			picks[geo_nearest(loc.point, candidates, 3, NULL)]++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / BENCH_N;
	printf("lookups: %d; %.0f ns per lookup and selection\n", BENCH_N, ns);
	printf("outcomes: located %zu, country only %zu, not found %zu\n", outcomes[GEO_LOCATED],
		outcomes[GEO_COUNTRY_ONLY], outcomes[GEO_NOT_FOUND]);
	printf("nearest: Ashburn %zu, Frankfurt %zu, Tokyo %zu\n", picks[0], picks[1], picks[2]);
	geo_db_unref(db);
	return 0;
}
