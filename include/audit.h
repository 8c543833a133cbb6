/* audit: the audit log (SPEC §5): every operator call that changes
 * something or reads a secret, and every dynamic registration, with actor,
 * address, action, target and result, in one Redis stream (SCHEMA_AUDIT_KEY,
 * the newest AUDIT_KEEP entries). audit_classify is pure. */
#ifndef BOOTSTRAPD_AUDIT_H
#define BOOTSTRAPD_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <http_parser.h>

struct store;

#define AUDIT_KEEP 1000000 /* entries kept (XADD MAXLEN ~) */
#define AUDIT_ACTION_MAX 40
#define AUDIT_TARGET_MAX 160

/* Whether METHOD PATH (the admin API's, not decoded) is audited: true with
 * its action ("product.put", "devices.register", ...) and target ("a1PK",
 * "a1PK/dev1", a batch id) in ACTION and TARGET. Reads are not, but for
 * those that answer a secret (a registration's CSV). */
bool audit_classify(enum http_method method, const char *path, char action[AUDIT_ACTION_MAX],
	char target[AUDIT_TARGET_MAX]);

/* Appends an entry (every string borrowed for the call; none is a secret).
 * Best effort with a durable write: an entry Redis does not take is logged
 * in full instead. */
void audit_record(struct store *st, const char *actor, const char *from, const char *action, const char *target,
	const char *result);

#endif
