/* The Tencent SDK's dynamic registration body (dynform), and the strict
 * JSON reading under it: no input crashes; what parses holds only valid
 * names and an integer's text, and its signed content is what it says. */
#include <stdlib.h>
#include <string.h>

#include "dynform.h"
#include "form.h"
#include "fuzz.h"
#include "jsonstrict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), content[256];
	struct dynform_tencent f;
	struct jsonstrict_error e;
	const char *why = NULL;
	yajl_val v;

	if (dynform_tencent_parse(text, size, &f, &why) == 0) {
		fuzz_assert(why == NULL);
		fuzz_assert(form_valid_product_key(f.product_id) && form_valid_device_name(f.device_name));
		fuzz_assert(f.nonce[0] != '\0' && f.timestamp[0] != '\0' && f.signature[0] != '\0');
		fuzz_assert(strspn(f.nonce + (f.nonce[0] == '-'), "0123456789") == strlen(f.nonce) - (f.nonce[0] == '-'));
		int n = dynform_tencent_content(&f, content, sizeof(content));
		fuzz_assert(n > 0 && strncmp(content, "deviceName=", 11) == 0 && (size_t)n == strlen(content));
	} else {
		fuzz_assert(why != NULL);
	}
	if ((v = jsonstrict_parse(text, size, 8, &e)) != NULL)
		yajl_tree_free(v);
	else
		fuzz_assert(e.message[0] != '\0');
	free(text);
	return 0;
}
