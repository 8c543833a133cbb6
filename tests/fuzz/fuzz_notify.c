/* A device's notify reply as it comes from the broker: the input is the
 * topic, a NUL, then the payload (all payload when there is no NUL). */
#include <string.h>
#include <stdlib.h>

#include "fuzz.h"
#include "notify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t off = nul ? (size_t)(nul - data) + 1 : 0;
	char pk[33], dn[33], id[32];
	unsigned char *payload = malloc(size - off ? size - off : 1);
	int rc;

	if (nul) {
		if (notify_parse_reply_topic((const char *)data, pk, dn) == 0)
			fuzz_assert(strlen(pk) <= 32 && strlen(dn) <= 32);
	}
	if (size - off)
		memcpy(payload, data + off, size - off);
	memset(id, 'x', sizeof(id));
	rc = notify_parse_reply(payload, size - off, id);
	fuzz_assert(rc >= -1 && rc <= 1);
	fuzz_assert(memchr(id, '\0', sizeof(id)) != NULL);
	for (size_t i = 0; id[i]; i++)
		fuzz_assert(id[i] >= '0' && id[i] <= '9');
	fuzz_assert(rc == 1 || id[0] == '\0');
	free(payload);
	return 0;
}
