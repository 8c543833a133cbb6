/* bootstrap: the device endpoint on the public listener (SPEC §4):
 * POST|GET /auth/bootstrap and GET /auth/bootstrap/regionId/{regionId}. */
#ifndef BOOTSTRAPD_BOOTSTRAP_H
#define BOOTSTRAPD_BOOTSTRAP_H

#include <stdbool.h>
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

struct server_thread;
/* For the listener's other device routes (dynreg): answers REQ with
 * {"code":CODE,"message":MESSAGE} under CODE's HTTP status (SPEC §4: 460 is
 * 400, 5001 404, 6200 403, 6201 409, the others their own). */
void bootstrap_fail_req(struct http_request *req, int code, const char *message);
/* True when REQ's client (SPEC §6) is over its rate: then answered 429. */
bool bootstrap_rate_limited(struct server_thread *t, struct http_request *req);

#endif
