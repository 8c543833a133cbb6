/* bootstrap: the device endpoint on the public listener (SPEC §4):
 * POST|GET /auth/bootstrap and GET /auth/bootstrap/regionId/{regionId}. */
#ifndef BOOTSTRAPD_BOOTSTRAP_H
#define BOOTSTRAPD_BOOTSTRAP_H

#include <event2/http.h>

struct bootstrap_cache;

/* A per-thread cache of batch assignments (immutable once written). */
struct bootstrap_cache *bootstrap_cache_new(void);
void bootstrap_cache_free(struct bootstrap_cache *cache);

/* The public listener's request callback; ARG is the struct server_thread. */
void bootstrap_handle(struct evhttp_request *req, void *arg);

#endif
