/* jsonstrict: a strict syntax pass over JSON text, run before yajl_tree_parse
 * (which accepts comments and cuts strings at an escaped NUL): one value, no
 * comments, bounded nesting, no \u0000 in strings, and where the first
 * problem is. Pure. */
#ifndef BOOTSTRAPD_JSONSTRICT_H
#define BOOTSTRAPD_JSONSTRICT_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

struct jsonstrict_error {
	size_t offset;     /* bytes before the problem */
	size_t line, col;  /* 1-based */
	char message[160]; /* one line, no position */
};

/* Returns 0 when TEXT (LEN bytes) is one well-formed JSON value nested at
 * most MAX_DEPTH deep, else -1 with ERR filled in. */
int jsonstrict_check(const char *text, size_t len, int max_depth, struct jsonstrict_error *err)
	__attribute__((warn_unused_result));

/* The one strict reading of a JSON body: jsonstrict_check, then yajl's tree,
 * then no object holding a key twice. TEXT must have a NUL after its LEN
 * bytes. Returns the tree (the caller frees it with yajl_tree_free), or
 * NULL with ERR filled in (a repeated key names itself, offset 0). */
yajl_val jsonstrict_parse(const char *text, size_t len, int max_depth, struct jsonstrict_error *err)
	__attribute__((warn_unused_result));

#endif
