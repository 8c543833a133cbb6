#include "jsonstrict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

struct jsonstrict_state {
	int depth, max_depth;
	const char *why;
};

static int jsonstrict_open(void *ctx)
{
	struct jsonstrict_state *s = ctx;

	if (++s->depth > s->max_depth) {
		s->why = "nested too deeply";
		return 0;
	}
	return 1;
}

static int jsonstrict_close(void *ctx)
{
	struct jsonstrict_state *s = ctx;

	s->depth--;
	return 1;
}

static int jsonstrict_string(void *ctx, const unsigned char *str, size_t len)
{
	struct jsonstrict_state *s = ctx;

	if (memchr(str, '\0', len) != NULL) {
		s->why = "strings must not contain \\u0000";
		return 0;
	}
	return 1;
}

static const yajl_callbacks jsonstrict_callbacks = {
	.yajl_string = jsonstrict_string,
	.yajl_start_map = jsonstrict_open,
	.yajl_map_key = jsonstrict_string,
	.yajl_end_map = jsonstrict_close,
	.yajl_start_array = jsonstrict_open,
	.yajl_end_array = jsonstrict_close,
};

int jsonstrict_check(const char *text, size_t len, int max_depth, struct jsonstrict_error *err)
{
	struct jsonstrict_state s = { 0, max_depth, NULL };
	unsigned char *msg = NULL;
	yajl_handle h;
	yajl_status st;
	size_t off = len;
	const char *why;

	memset(err, 0, sizeof(*err));
	h = yajl_alloc(&jsonstrict_callbacks, NULL, &s);
	if (h == NULL) {
		snprintf(err->message, sizeof(err->message), "out of memory");
		return -1;
	}
	st = yajl_parse(h, (const unsigned char *)text, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h); /* an incomplete value ends at the end of the text */
	else
		off = yajl_get_bytes_consumed(h);
	if (st == yajl_status_ok) {
		yajl_free(h);
		return 0;
	}
	if (off > len)
		off = len;
	err->offset = off;
	err->line = err->col = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			err->line++;
			err->col = 1;
		} else {
			err->col++;
		}
	}
	if (st == yajl_status_client_canceled && s.why) {
		why = s.why;
	} else {
		msg = yajl_get_error(h, 0, NULL, 0);
		why = msg ? (const char *)msg : "syntax error";
	}
	/* yajl's messages end in a line break; keep the first line. */
	snprintf(err->message, sizeof(err->message), "%.*s", (int)strcspn(why, "\n"), why);
	if (msg)
		yajl_free_error(h, msg);
	yajl_free(h);
	return -1;
}

static int jsonstrict_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key an object of V holds twice, "" when out of memory, NULL for none. */
static const char *jsonstrict_repeated(yajl_val v)
{
	const char *dup = NULL;

	if (YAJL_IS_ARRAY(v)) {
		for (size_t i = 0; dup == NULL && i < v->u.array.len; i++)
			dup = jsonstrict_repeated(v->u.array.values[i]);
		return dup;
	}
	if (!YAJL_IS_OBJECT(v))
		return NULL;
	if (v->u.object.len > 1) {
		/* Sorted, so that an object of many keys costs n log n, not n^2. */
		const char **keys = malloc(v->u.object.len * sizeof(*keys));
		if (keys == NULL)
			return "";
		memcpy(keys, v->u.object.keys, v->u.object.len * sizeof(*keys));
		qsort(keys, v->u.object.len, sizeof(*keys), jsonstrict_cmp);
		for (size_t i = 1; dup == NULL && i < v->u.object.len; i++)
			if (strcmp(keys[i - 1], keys[i]) == 0)
				dup = keys[i];
		free(keys);
	}
	for (size_t i = 0; dup == NULL && i < v->u.object.len; i++)
		dup = jsonstrict_repeated(v->u.object.values[i]);
	return dup;
}

yajl_val jsonstrict_parse(const char *text, size_t len, int max_depth, struct jsonstrict_error *err)
{
	char buf[128];
	yajl_val root;
	const char *dup;

	if (jsonstrict_check(text, len, max_depth, err) < 0)
		return NULL;
	memset(err, 0, sizeof(*err));
	if ((root = yajl_tree_parse(text, buf, sizeof(buf))) == NULL) {
		snprintf(err->message, sizeof(err->message), "%s", "not JSON");
		return NULL;
	}
	if ((dup = jsonstrict_repeated(root)) != NULL) {
		if (dup[0] == '\0')
			snprintf(err->message, sizeof(err->message), "out of memory");
		else
			snprintf(err->message, sizeof(err->message), "key \"%.64s\" given twice", dup);
		yajl_tree_free(root);
		return NULL;
	}
	return root;
}
