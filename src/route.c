#include "route.h"

#include <string.h>

bool route_match(const char *pattern, const char *path, struct route_args *out)
{
	const char *p = pattern, *s = path;

	out->n = 0;
	while (*p != '\0') {
		if (*p != '{') {
			if (*p++ != *s++)
				return false;
			continue;
		}
		/* A parameter: up to the pattern's next '/', the path's next '/'. */
		const char *pend = strchr(p, '}');
		size_t len = strcspn(s, "/");
		if (pend == NULL || out->n == ROUTE_ARGS_MAX || len == 0 || len >= ROUTE_ARG_MAX)
			return false;
		memcpy(out->v[out->n], s, len);
		out->v[out->n++][len] = '\0';
		p = pend + 1;
		s += len;
	}
	return *s == '\0';
}
