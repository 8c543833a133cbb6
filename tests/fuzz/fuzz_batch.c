/* batch_parse, a distribution batch upload. The input is one byte for the
 * Content-Type ('j': application/json, anything else: text/csv), then the
 * query string up to the first line break, then the body. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "csvdoc.h"
#include "form.h"
#include "fuzz.h"

#define MAX_DEVICES 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_catalog();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *ct;
	const uint8_t *nl;
	char *query, *body;
	size_t qlen, off;
	struct batch_request *req = NULL;
	struct batch_error err = { 0 };

	if (size < 1)
		return 0;
	ct = data[0] == 'j' ? "application/json" : "text/csv";
	nl = memchr(data + 1, '\n', size - 1);
	qlen = nl ? (size_t)(nl - data - 1) : size - 1;
	off = nl ? qlen + 2 : size;
	query = fuzz_strndup(data + 1, qlen);
	body = malloc(size - off ? size - off : 1);
	if (size - off)
		memcpy(body, data + off, size - off);
	if (batch_parse(query, ct, body, size - off, fuzz_catalog(), MAX_DEVICES, &req, &err) == 0) {
		fuzz_assert(req->nitems >= 1 && req->nitems <= MAX_DEVICES);
		fuzz_assert(req->ntargets >= 1 && req->ntargets <= SCHEMA_TARGETS_MAX);
		fuzz_assert((req->target_account == NULL) == (req->auth_code == NULL));
		for (size_t i = 0; i < req->nitems; i++) {
			const struct batch_item *it = &req->items[i];

			fuzz_assert(it->tag == BATCH_TAG_OK || it->tag == BATCH_TAG_DUPLICATE ||
				it->tag == BATCH_TAG_INVALID_NAME);
			fuzz_assert((it->device_name == NULL) == (req->kind == BATCH_PRODUCTS));
			fuzz_assert(strlen(it->product_key) <= CSVDOC_FIELD_MAX);
			fuzz_assert(i == 0 || it->row > req->items[i - 1].row);
			/* Malformed names first; then every repeat of an earlier good row. */
			if (!form_valid_product_key(it->product_key) ||
				(it->device_name != NULL && !form_valid_device_name(it->device_name))) {
				fuzz_assert(it->tag == BATCH_TAG_INVALID_NAME);
				continue;
			}
			bool repeat = false;
			for (size_t j = 0; j < i && !repeat; j++)
				repeat = req->items[j].tag != BATCH_TAG_INVALID_NAME &&
					strcmp(req->items[j].product_key, it->product_key) == 0 &&
					(it->device_name == NULL || strcmp(req->items[j].device_name, it->device_name) == 0);
			fuzz_assert(it->tag == (repeat ? BATCH_TAG_DUPLICATE : BATCH_TAG_OK));
		}
		batch_request_free(req);
	} else {
		fuzz_assert(err.status >= 400 && err.code != NULL && memchr(err.message, '\0', sizeof(err.message)));
	}
	free(body);
	free(query);
	return 0;
}
