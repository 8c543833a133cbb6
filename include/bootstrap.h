/* bootstrap: the device endpoint on the public listener (SPEC §4):
 * POST|GET /auth/bootstrap and GET /auth/bootstrap/regionId/{regionId}. */
#ifndef BOOTSTRAPD_BOOTSTRAP_H
#define BOOTSTRAPD_BOOTSTRAP_H

#include <stddef.h>

#include "http.h"

struct bootstrap_cache;

/* Per thread: batch assignments (immutable once written), rendered answers
 * of the current catalog, request contexts for reuse. */
struct bootstrap_cache *bootstrap_cache_new(void);
void bootstrap_cache_free(struct bootstrap_cache *cache);
/* The thread's catalog was replaced: the answers rendered from the old one go. */
void bootstrap_cache_catalog_changed(struct bootstrap_cache *cache);

/* The public listener's routes (handlers take the struct server_thread)
 * and its error shape, {"code":N,"message":"..."}. */
extern const struct http_route bootstrap_routes[];
extern const size_t bootstrap_nroutes;
void bootstrap_error(struct http_request *req, int status, const char *message);

#endif
