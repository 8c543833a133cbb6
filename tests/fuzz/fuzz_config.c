/* config_load on the input as the configuration file (an in-memory file),
 * with an empty environment. */
#include <stdlib.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *const noenv[] = { NULL };
	struct config *cfg = NULL;
	char *cause = NULL;

	if (config_load(fuzz_file(data, size), noenv, &cfg, &cause) == 0) {
		fuzz_assert(cause == NULL && cfg->threads >= 1);
		config_free(cfg);
	} else {
		fuzz_assert(cfg == NULL && cause != NULL);
		free(cause);
	}
	return 0;
}
