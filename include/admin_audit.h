/* admin_audit: reading the audit log (SPEC §5): GET /v1/audit, as JSON pages
 * or exported as CSV (Accept: text/csv). */
#ifndef BOOTSTRAPD_ADMIN_AUDIT_H
#define BOOTSTRAPD_ADMIN_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include "adminreq.h"

struct server_thread;

/* This module's /v1 routes; admin_v1 checked the token. */
extern const struct admin_route admin_audit_routes[];
extern const size_t admin_audit_nroutes;

/* A time parameter: Unix seconds, or RFC 3339 in UTC ("2026-12-01T17:00:00Z").
 * 0 and *OUT, or -1. Pure. */
int admin_audit_parse_time(const char *s, int64_t *out) __attribute__((warn_unused_result));

#endif
