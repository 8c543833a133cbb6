/* A device registration upload (POST /v1/products/{pk}/devices): the input
 * goes through both readers, registry_devices_csv (text/csv) and
 * registry_devices_count (application/json), with a NUL after it as the
 * admin API hands it over. */
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "fuzz.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fuzz_strndup(data, size);
	struct registry_device *d = NULL;
	struct registry_error err = { 0 };
	long n;

	n = registry_devices_csv(buf, size, &d, &err);
	if (n >= 0) {
		fuzz_assert(n >= 1 && n <= REGISTRY_DEVICES_MAX);
		for (long i = 0; i < n; i++) {
			fuzz_assert(form_valid_device_name(d[i].name));
			fuzz_assert(i == 0 || d[i].row > d[i - 1].row);
			for (long j = 0; j < i; j++)
				fuzz_assert(strcmp(d[i].name, d[j].name) != 0);
		}
		free(d);
	} else {
		fuzz_assert(d == NULL && err.code != NULL && (err.status == 400 || err.status == 413 || err.status == 500));
	}

	memset(&err, 0, sizeof(err));
	n = registry_devices_count(buf, size, &err);
	fuzz_assert(n == -1 ? err.code != NULL : n >= 1 && n <= REGISTRY_DEVICES_MAX);
	free(buf);
	return 0;
}
