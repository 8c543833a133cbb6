#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "schema.h"
#include "store.h"

/* The audited calls: METHOD, the path's segments after /v1 ('*' a value),
 * the action, and which values make the target. */
static const struct {
	enum http_method method;
	const char *segs[5];
	const char *action;
} audit_routes[] = {
	{ HTTP_PUT, { "products", "*" }, "product.put" },
	{ HTTP_POST, { "products", "*", "secret" }, "product.secret.rotate" },
	{ HTTP_POST, { "products", "*", "devices" }, "devices.register" },
	{ HTTP_GET, { "products", "*", "registrations", "*" }, "registration.download" },
	{ HTTP_POST, { "devices", "*", "*", "secret" }, "device.secret.reset" },
	{ HTTP_POST, { "batches" }, "batch.create" },
	{ HTTP_POST, { "batches", "*", "retry" }, "batch.retry" },
	{ HTTP_POST, { "accounts", "*", "auth-codes" }, "authcode.issue" },
	{ HTTP_POST, { "subscriptions" }, "subscription.create" },
	{ HTTP_DELETE, { "subscriptions", "*" }, "subscription.delete" },
};

bool audit_classify(enum http_method method, const char *path, char action[AUDIT_ACTION_MAX],
	char target[AUDIT_TARGET_MAX])
{
	const char *segs[6];
	size_t lens[6], n = 0;
	const char *p;

	if (path == NULL || strncmp(path, "/v1/", 4) != 0)
		return false;
	/* Not a change: the brokers' checks of device tokens. */
	if (strcmp(path, "/v1/mqtt/auth") == 0)
		return false;
	for (p = path + 4; n < 6;) {
		const char *e = strchr(p, '/');
		segs[n] = p;
		lens[n] = e ? (size_t)(e - p) : strlen(p);
		n++;
		if (e == NULL)
			break;
		p = e + 1;
	}
	for (size_t r = 0; r < sizeof(audit_routes) / sizeof(audit_routes[0]); r++) {
		size_t k, off = 0;
		if (audit_routes[r].method != method)
			continue;
		for (k = 0; k < n && audit_routes[r].segs[k]; k++)
			if (strcmp(audit_routes[r].segs[k], "*") != 0 &&
			    (strlen(audit_routes[r].segs[k]) != lens[k] || memcmp(audit_routes[r].segs[k], segs[k], lens[k])))
				break;
		if (k != n || audit_routes[r].segs[k] != NULL)
			continue;
		target[0] = '\0';
		for (k = 0; k < n; k++) {
			if (strcmp(audit_routes[r].segs[k], "*") != 0)
				continue;
			int w = snprintf(target + off, AUDIT_TARGET_MAX - off, "%s%.*s", off ? "/" : "", (int)lens[k], segs[k]);
			if (w < 0 || (size_t)w >= AUDIT_TARGET_MAX - off)
				break;
			off += (size_t)w;
		}
		snprintf(action, AUDIT_ACTION_MAX, "%s", audit_routes[r].action);
		return true;
	}
	/* Any other change is audited by what it is. */
	if (method == HTTP_GET || method == HTTP_HEAD)
		return false;
	snprintf(action, AUDIT_ACTION_MAX, "%s", http_method_str(method));
	snprintf(target, AUDIT_TARGET_MAX, "%s", path);
	return true;
}

struct audit_call {
	char line[512];
};

static void audit_written(redisReply *reply, void *arg)
{
	struct audit_call *c = arg;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_warn("audit", "not kept in Redis (%s): %s", reply ? reply->str : "no answer", c->line);
	free(c);
}

void audit_record(struct store *st, const char *actor, const char *from, const char *action, const char *target,
	const char *result)
{
	char at[24], keep[24];
	struct audit_call *c = calloc(1, sizeof(*c));

	snprintf(at, sizeof(at), "%lld", (long long)time(NULL));
	snprintf(keep, sizeof(keep), "%d", AUDIT_KEEP);
	if (c != NULL)
		snprintf(c->line, sizeof(c->line), "actor=%s from=%s action=%s target=%s result=%s", actor, from, action,
			target, result);
	const char *argv[] = { "XADD", SCHEMA_AUDIT_KEY, "MAXLEN", "~", keep, "*", "at", at, "actor", actor, "from", from,
		"action", action, "target", target, "result", result };
	if (c == NULL || store_write(st, audit_written, c, 18, argv, NULL) < 0) {
		log_warn("audit", "not kept in Redis (unreachable): actor=%s from=%s action=%s target=%s result=%s", actor,
			from, action, target, result);
		free(c);
	}
}
