/* admin_hooks: push subscriptions through the admin API (SPEC §5):
 * POST /v1/subscriptions, GET /v1/subscriptions[/{id}], DELETE /v1/subscriptions/{id}. */
#ifndef BOOTSTRAPD_ADMIN_HOOKS_H
#define BOOTSTRAPD_ADMIN_HOOKS_H

#include <stdbool.h>
#include "adminreq.h"

struct server_thread;

/* This module's /v1 routes; admin_v1 checked the token. */
extern const struct admin_route admin_hooks_routes[];
extern const size_t admin_hooks_nroutes;

#endif
