/* admin_batch: the admin API's distribution calls (SPEC §5): batches,
 * cross-account authorization codes and statistics. */
#ifndef BOOTSTRAPD_ADMIN_BATCH_H
#define BOOTSTRAPD_ADMIN_BATCH_H

#include <stdbool.h>
#include <time.h>
#include "http.h"

struct server_thread;

/* Handles PATH if it is one of this module's (/v1/batches..., /v1/accounts/...,
 * /v1/stats) and returns true; the caller checked the token. */
bool admin_batch_handle(struct server_thread *t, struct http_request *req, const char *path);

#endif
