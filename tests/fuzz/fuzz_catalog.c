/* catalog_load on the input as regions.json (an in-memory file). A catalog it
 * accepts must find every region by its id and aliases, render every host
 * within bounds and survive its own JSON (GET /v1/regions) read back. */
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "fuzz.h"

static void check(const struct catalog *cat)
{
	static const char pk[] = "a1B2c3D4e5Fa1B2c3D4e5Fa1B2c3D4e5"; /* the longest allowed */
	static const char dn[] = "dev-0001dev-0001dev-0001dev-0001";
	struct catalog_vars vars = { pk, dn };
	char host[CATALOG_HOST_MAX + 1];

	for (size_t r = 0; r < cat->nregions; r++) {
		const struct catalog_region *reg = &cat->regions[r];

		fuzz_assert(catalog_region(cat, reg->id) == reg && reg->ninstances >= 1);
		fuzz_assert(catalog_region_named(cat, reg->id) == reg);
		for (size_t a = 0; a < reg->naliases; a++)
			fuzz_assert(catalog_region_named(cat, reg->aliases[a]) == reg);
		fuzz_assert(catalog_default_instance(reg) != NULL);
		for (size_t i = 0; i < reg->ninstances; i++) {
			const struct catalog_instance *inst = &reg->instances[i];

			fuzz_assert(catalog_find_instance(cat, inst->id) == inst && inst->region == reg);
			for (size_t e = 0; e < inst->nendpoints; e++) {
				int n = catalog_render_host(&inst->endpoints[e], inst, &vars, host, sizeof(host));

				fuzz_assert(n >= 0 && (size_t)n == strlen(host) && n <= CATALOG_HOST_MAX);
				/* The regionId form: only a device template without regionHost is refused. */
				n = catalog_render_region_host(&inst->endpoints[e], inst, host, sizeof(host));
				if (inst->endpoints[e].region_host || !inst->endpoints[e].needs_device)
					fuzz_assert(n >= 0 && (size_t)n == strlen(host));
				else
					fuzz_assert(n == -1);
				fuzz_assert(inst->endpoints[e].port >= 1 && inst->endpoints[e].port <= 65535);
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct catalog *cat = NULL, *again = NULL;
	char *cause = NULL, *json = NULL;
	size_t len;

	if (catalog_load(fuzz_file(data, size), &cat, &cause) != 0) {
		fuzz_assert(cat == NULL && cause != NULL);
		free(cause);
		return 0;
	}
	check(cat);
	fuzz_assert(catalog_to_json(cat, &json, &len) == 0);
	if (catalog_parse(json, len, "again", &again, &cause) != 0)
		fuzz_fail(__FILE__, __LINE__, cause);
	fuzz_assert(again->nregions == cat->nregions);
	check(again);
	catalog_unref(again);
	free(json);
	catalog_unref(cat);
	return 0;
}
