/* route: path templates for route tables. "/v1/batches/{batchId}/results"
 * matches a path segment by segment; each "{name}" takes one non-empty
 * segment, which is captured. Pure. */
#ifndef BOOTSTRAPD_ROUTE_H
#define BOOTSTRAPD_ROUTE_H

#include <stdbool.h>

#define ROUTE_ARGS_MAX 3
#define ROUTE_ARG_MAX 128 /* a captured segment, NUL included: longer ones do not match */

struct route_args {
	int n;
	char v[ROUTE_ARGS_MAX][ROUTE_ARG_MAX];
};

/* True when PATH (not decoded, no query) fits PATTERN; OUT then holds the
 * captured segments in order. OUT is undefined when false. */
bool route_match(const char *pattern, const char *path, struct route_args *out);

#endif
