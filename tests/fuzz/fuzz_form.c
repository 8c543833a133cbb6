/* form_parse: the device request's query string and form body, decoded in
 * place. The input is QUERY "\n" BODY; without a line break it is all body
 * and there is no query. Each part gets a buffer of its exact size, so ASan
 * sees a write outside it. */
#include <stdlib.h>
#include <string.h>

#include "form.h"
#include "fuzz.h"

static char *copy(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1);

	if (s == NULL)
		abort();
	if (size)
		memcpy(s, data, size);
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const skip[] = { "sign", "signmethod", "version", "resources" };
	const uint8_t *nl = memchr(data, '\n', size);
	size_t qlen = nl ? (size_t)(nl - data) : 0, off = nl ? qlen + 1 : 0, blen = size - off, n, len;
	char *query = nl ? copy(data, qlen) : NULL, *body = blen ? copy(data + off, blen) : NULL, *content;
	struct form_param params[FORM_PARAMS_MAX];
	struct form_request req;
	const char *why = NULL;

	if (form_parse(&req, query, qlen, body, blen, &why) == 0) {
		fuzz_assert(why == NULL && req.nparams <= FORM_PARAMS_MAX);
		fuzz_assert(form_valid_product_key(req.product_key) && form_valid_device_name(req.device_name));
		fuzz_assert(req.nresources >= 1 && req.nresources <= FORM_RESOURCES_MAX);
		for (size_t i = 0; i < req.nparams; i++)
			fuzz_assert(strlen(req.params[i].value) == req.params[i].value_len);
		/* bootstrap.c gives the signed content as much room as the input. */
		content = copy(data, qlen + blen);
		fuzz_assert(form_sign_content(&req, skip, 4, content, qlen + blen, &len) == 0 && len <= qlen + blen);
		free(content);
	} else {
		fuzz_assert(why != NULL);
	}
	form_request_clear(&req);

	/* The admin API's query strings. */
	free(body);
	body = copy(data, size);
	if (form_query_parse(body, size, params, FORM_PARAMS_MAX, &n, &why) == 0) {
		fuzz_assert(n <= FORM_PARAMS_MAX);
		for (size_t i = 0; i < n; i++)
			fuzz_assert(params[i].name_len > 0 && strlen(params[i].value) == params[i].value_len);
	}
	free(body);
	free(query);
	return 0;
}
