#include "admin_audit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "adminreq.h"
#include "csvdoc.h"
#include "form.h"
#include "schema.h"
#include "server.h"
#include "store.h"

#define ADMIN_AUDIT_JSON_MAX 1000   /* entries a JSON page */
#define ADMIN_AUDIT_CSV_MAX 100000  /* entries an export */

static const char *const admin_audit_fields[] = { "actor", "from", "action", "target", "result" };
#define ADMIN_AUDIT_NFIELDS (sizeof(admin_audit_fields) / sizeof(admin_audit_fields[0]))

int admin_audit_parse_time(const char *s, int64_t *out)
{
	struct tm tm = { 0 };
	const char *end;
	uint64_t v;

	if (schema_parse_u64(s, strlen(s), &v) == 0 && v <= (uint64_t)INT64_MAX / 1000) {
		*out = (int64_t)v;
		return 0;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0')
		return -1;
	*out = (int64_t)timegm(&tm);
	return *out < 0 ? -1 : 0;
}

struct admin_audit_page {
	bool csv;
	long limit;
};

/* The value of NAME among an entry's field/value pairs, "" when absent. */
static const char *admin_audit_value(const redisReply *fv, const char *name)
{
	for (size_t i = 0; fv->type == REDIS_REPLY_ARRAY && i + 1 < fv->elements; i += 2)
		if (fv->element[i]->type == REDIS_REPLY_STRING && strcmp(fv->element[i]->str, name) == 0 &&
		    fv->element[i + 1]->type == REDIS_REPLY_STRING)
			return fv->element[i + 1]->str;
	return "";
}

static void admin_audit_time(const redisReply *fv, char out[32])
{
	time_t t = (time_t)strtoll(admin_audit_value(fv, "at"), NULL, 10);
	struct tm tm;

	out[0] = '\0';
	if (t > 0 && gmtime_r(&t, &tm) != NULL)
		strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void admin_audit_csv(struct adminreq *ar, const redisReply *reply, size_t n)
{
	size_t cap = 64, off = 0;
	char *csv, at[32];

	/* At most: each value quoted, its quotes doubled, a "'" before it. */
	for (size_t i = 0; i < n; i++) {
		cap += 2 * 32 + 8;
		for (size_t k = 0; k < ADMIN_AUDIT_NFIELDS; k++)
			cap += 2 * strlen(admin_audit_value(reply->element[i]->element[1], admin_audit_fields[k])) + 4;
	}
	if ((csv = malloc(cap)) == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	off = (size_t)snprintf(csv, cap, "at,actor,from,action,target,result\r\n");
	for (size_t i = 0; i < n; i++) {
		const redisReply *fv = reply->element[i]->element[1];
		admin_audit_time(fv, at);
		/* Every cell echoes what some client sent: neutralised (CSV injection). */
		if (csvdoc_write_text(csv, cap, &off, at) < 0)
			goto toolong;
		for (size_t k = 0; k < ADMIN_AUDIT_NFIELDS; k++) {
			if (off + 1 >= cap)
				goto toolong;
			csv[off++] = ',';
			if (csvdoc_write_text(csv, cap, &off, admin_audit_value(fv, admin_audit_fields[k])) < 0)
				goto toolong;
		}
		if (off + 2 >= cap)
			goto toolong;
		csv[off++] = '\r';
		csv[off++] = '\n';
	}
	ar->answered = true;
	adminreq_send(ar->req, 200, adminreq_csv, csv, off);
	free(csv);
	return;
toolong:
	free(csv);
	adminreq_error(ar, 500, "internal", "the export did not fit");
}

static void admin_audit_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_audit_page *pg = ar->data;
	size_t n;
	char at[32];

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		adminreq_redis_failed(ar, reply);
		goto out;
	}
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *e = reply->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) {
			adminreq_error(ar, 500, "internal", "the audit log is unreadable");
			goto out;
		}
	}
	n = reply->elements > (size_t)pg->limit ? (size_t)pg->limit : reply->elements;
	if (pg->csv) {
		if (reply->elements > n)
			http_add_header(ar->req, "X-Next-Cursor", reply->element[n - 1]->element[0]->str);
		admin_audit_csv(ar, reply, n);
		goto out;
	}
	yajl_gen g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "entries");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < n; i++) {
		const redisReply *fv = reply->element[i]->element[1];
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "id", reply->element[i]->element[0]->str);
		admin_audit_time(fv, at);
		adminreq_gen_kv(g, "at", at);
		for (size_t k = 0; k < ADMIN_AUDIT_NFIELDS; k++)
			adminreq_gen_kv(g, admin_audit_fields[k], admin_audit_value(fv, admin_audit_fields[k]));
		yajl_gen_map_close(g);
	}
	yajl_gen_array_close(g);
	adminreq_gen_kv(g, "nextCursor", reply->elements > n ? reply->element[n - 1]->element[0]->str : NULL);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
out:
	adminreq_unref(ar);
}

/* A cursor is an entry id as the log answered it: digits '-' digits. */
static bool admin_audit_valid_cursor(const char *s)
{
	size_t a = strspn(s, "0123456789");

	return a > 0 && a <= 20 && s[a] == '-' && strspn(s + a + 1, "0123456789") == strlen(s + a + 1) &&
		strlen(s + a + 1) > 0 && strlen(s + a + 1) <= 20;
}

static void admin_audit_get(struct adminreq *ar, const struct route_args *a)
{
	struct form_param params[FORM_PARAMS_MAX];
	struct admin_audit_page *pg;
	size_t np = 0, qlen = ar->req->r.query_len;
	char *q = qlen ? strndup(ar->req->r.query, qlen) : NULL;
	const char *why = NULL, *accept = http_header(ar->req, "Accept");
	char start[32] = "-", end[48] = "+", count[24];
	int64_t since = -1, until = -1;

	(void)a;
	if ((pg = calloc(1, sizeof(*pg))) == NULL || (qlen && q == NULL)) {
		free(q);
		free(pg);
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	ar->data = pg;
	ar->data_free = free;
	pg->csv = accept && strstr(accept, "text/csv") != NULL;
	pg->limit = pg->csv ? 10000 : 100;
	if (q && form_query_parse(q, qlen, params, FORM_PARAMS_MAX, &np, &why) < 0) {
		adminreq_error(ar, 400, "invalid_parameter", why);
		goto out;
	}
	for (size_t i = 0; i < np; i++) {
		char name[16];
		const char *v = params[i].value;
		snprintf(name, sizeof(name), "%.*s", (int)params[i].name_len, params[i].name);
		if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
			int64_t *t = name[0] == 's' ? &since : &until;
			if (admin_audit_parse_time(v, t) < 0) {
				adminreq_error(ar, 400, "invalid_parameter",
					"since and until: Unix seconds or RFC 3339 in UTC (2026-12-01T17:00:00Z)");
				goto out;
			}
		} else if (strcmp(name, "limit") == 0) {
			uint64_t l;
			long max = pg->csv ? ADMIN_AUDIT_CSV_MAX : ADMIN_AUDIT_JSON_MAX;
			if (schema_parse_u64(v, strlen(v), &l) < 0 || l < 1 || l > (uint64_t)max) {
				adminreq_error(ar, 400, "invalid_parameter",
					pg->csv ? "limit: 1 to 100000" : "limit: 1 to 1000");
				goto out;
			}
			pg->limit = (long)l;
		} else if (strcmp(name, "cursor") == 0) {
			if (!admin_audit_valid_cursor(v)) {
				adminreq_error(ar, 400, "invalid_parameter", "cursor: as nextCursor answered it");
				goto out;
			}
			snprintf(end, sizeof(end), "(%s", v);
		} else {
			adminreq_error(ar, 400, "invalid_parameter", "parameters: since, until, limit, cursor");
			goto out;
		}
	}
	/* Newest first: from UNTIL's last millisecond (or the cursor, exclusive) down to SINCE. */
	if (since >= 0)
		snprintf(start, sizeof(start), "%" PRId64, since * 1000);
	if (until >= 0 && end[0] == '+')
		snprintf(end, sizeof(end), "%" PRId64, until * 1000 + 999);
	snprintf(count, sizeof(count), "%ld", pg->limit + 1);
	const char *argv[] = { "XREVRANGE", SCHEMA_AUDIT_KEY, end, start, "COUNT", count };
	adminreq_command(ar, admin_audit_reply, 6, argv, false);
out:
	free(q);
}

const struct admin_route admin_audit_routes[] = {
	{ "/v1/audit", HTTP_GET, admin_audit_get },
};
const size_t admin_audit_nroutes = sizeof(admin_audit_routes) / sizeof(admin_audit_routes[0]);
