/* admin_hooks: push subscriptions through the admin API (SPEC §5):
 * POST /v1/subscriptions, GET /v1/subscriptions[/{id}], DELETE /v1/subscriptions/{id}. */
#ifndef BOOTSTRAPD_ADMIN_HOOKS_H
#define BOOTSTRAPD_ADMIN_HOOKS_H

#include <stdbool.h>
#include "http.h"

struct server_thread;

/* Handles PATH if it is one of this module's and returns true; the caller checked the token. */
bool admin_hooks_handle(struct server_thread *t, struct http_request *req, const char *path);

#endif
