/* admin_batch: the admin API's distribution calls (SPEC §5): batches,
 * cross-account authorization codes and statistics. */
#ifndef BOOTSTRAPD_ADMIN_BATCH_H
#define BOOTSTRAPD_ADMIN_BATCH_H

#include <stdbool.h>
#include <time.h>
#include "adminreq.h"

struct server_thread;

/* This module's /v1 routes (batches, auth codes, stats); admin_v1 checked
 * the token. */
extern const struct admin_route admin_batch_routes[];
extern const size_t admin_batch_nroutes;

#endif
