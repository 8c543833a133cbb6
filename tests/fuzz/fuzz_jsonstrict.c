/* jsonstrict_check, the strict pass before yajl's tree parser: what it
 * accepts, yajl_tree_parse must take too, nested no deeper than allowed. */
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "fuzz.h"
#include "jsonstrict.h"

#define DEPTH 8

static int depth(yajl_val v)
{
	int d = 0, k;

	if (YAJL_IS_OBJECT(v)) {
		for (size_t i = 0; i < v->u.object.len; i++)
			if ((k = depth(v->u.object.values[i])) > d)
				d = k;
		return d + 1;
	}
	if (YAJL_IS_ARRAY(v)) {
		for (size_t i = 0; i < v->u.array.len; i++)
			if ((k = depth(v->u.array.values[i])) > d)
				d = k;
		return d + 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1), errbuf[128];
	struct jsonstrict_error e;
	yajl_val tree;

	if (size)
		memcpy(text, data, size);
	if (jsonstrict_check(text, size, DEPTH, &e) == 0) {
		char *z = fuzz_strndup(data, size);

		fuzz_assert(memchr(data, '\0', size) == NULL);
		tree = yajl_tree_parse(z, errbuf, sizeof(errbuf));
		fuzz_assert(tree != NULL && depth(tree) <= DEPTH);
		yajl_tree_free(tree);
		free(z);
	} else {
		fuzz_assert(e.offset <= size && e.line >= 1 && e.col >= 1);
		fuzz_assert(e.message[0] != '\0' && strchr(e.message, '\n') == NULL);
	}
	free(text);
	return 0;
}
