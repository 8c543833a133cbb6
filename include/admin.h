/* admin: the operator API on the admin listener (SPEC §5) and the operations
 * endpoints /healthz, /readyz and /metrics. */
#ifndef BOOTSTRAPD_ADMIN_H
#define BOOTSTRAPD_ADMIN_H

#include <stddef.h>

#include "http.h"

/* The admin listener's routes; handlers take the struct server_thread. */
extern const struct http_route admin_routes[];
extern const size_t admin_nroutes;
/* The worker's own listener: the operations endpoints only. */
extern const struct http_route *const admin_ops_routes;
extern const size_t admin_nops_routes;

/* The admin listener's http_service.answered: the audit log of changes. */
void admin_answered(struct http_request *req, int status, void *ctx);

#endif
