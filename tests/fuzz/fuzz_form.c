/* form_parse: the device request's query string and form body. The input is
 * QUERY "\n" BODY; without a line break it is all body and there is no query. */
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t qlen = nl ? (size_t)(nl - data) : 0, off = nl ? qlen + 1 : 0;
	char *query = nl ? fuzz_strndup(data, qlen) : NULL;
	char *body = fuzz_strndup(data + off, size - off);
	struct form_request req;
	const char *why = NULL;

	if (form_parse(&req, query, body, size - off, &why) == 0) {
		fuzz_assert(why == NULL);
		fuzz_assert(form_valid_product_key(req.product_key) && form_valid_device_name(req.device_name));
		fuzz_assert(req.nresources >= 1 && req.nresources <= FORM_RESOURCES_MAX);
	} else {
		fuzz_assert(why != NULL);
	}
	form_request_clear(&req);
	free(body);
	free(query);
	return 0;
}
