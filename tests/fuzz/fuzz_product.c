/* registry_product_parse: a PUT /v1/products/{productKey} body (with a NUL
 * after it, as the admin API hands it over), checked against the fuzz catalog. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "registry.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_catalog();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	struct registry_product p;
	struct registry_error err = { 0 };

	if (registry_product_parse(text, size, fuzz_catalog(), &p, &err) == 0) {
		fuzz_assert(catalog_region(fuzz_catalog(), p.region->id) == p.region);
		fuzz_assert(p.instance->region == p.region);
		fuzz_assert(schema_valid_account(p.account));
		fuzz_assert(strcmp(p.auth, "none") == 0 || strcmp(p.auth, "required") == 0);
	} else {
		fuzz_assert(err.status == 400 && err.code != NULL);
	}
	free(text);
	return 0;
}
