/* admin: the operator API on the admin listener (SPEC §5) and the operations
 * endpoints /healthz, /readyz and /metrics. */
#ifndef BOOTSTRAPD_ADMIN_H
#define BOOTSTRAPD_ADMIN_H

#include <event2/http.h>

/* The admin listener's request callback; ARG is the struct server_thread. */
void admin_handle(struct evhttp_request *req, void *arg);
/* The worker's own listener: operations endpoints only. */
void admin_handle_ops(struct evhttp_request *req, void *arg);

#endif
