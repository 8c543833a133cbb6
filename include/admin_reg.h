/* admin_reg: a product's registration records (SPEC §5, mass production):
 * GET /v1/products/{pk}/registrations lists every registration call (CSV
 * upload, {"count":N}, and a day's dynamic registrations), and
 * GET /v1/products/{pk}/registrations/{id}.csv gives its devices with their
 * secrets again, for the factory (audited as a read of secrets). */
#ifndef BOOTSTRAPD_ADMIN_REG_H
#define BOOTSTRAPD_ADMIN_REG_H

#include <stdbool.h>
#include "adminreq.h"

struct server_thread;
struct store;

/* This module's /v1 routes; admin_v1 checked the token. */
extern const struct admin_route admin_reg_routes[];
extern const size_t admin_reg_nroutes;

/* Records a dynamic registration of PK/DN (the device endpoint's): one
 * record a product a UTC day. Best effort; logged when Redis does not take it. */
void admin_reg_dynamic(struct store *st, const char *pk, const char *dn);

#endif
