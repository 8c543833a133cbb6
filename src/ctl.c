/* ctl: bootstrapctl's command table, command line, requests and text. Pure. */
#include "ctl.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

enum ctl_opt_type { CTL_OPT_STRING, CTL_OPT_FLAG, CTL_OPT_NUMBER };

struct ctl_option {
	const char *name;  /* "--home-region" */
	const char *alias; /* "-h", or NULL */
	enum ctl_opt_type type;
	size_t offset;       /* of its field in struct ctl_args */
	const char *metavar; /* NULL for a flag */
	const char *help;
};

#define OPT(n, t, field, mv, h) { n, NULL, t, offsetof(struct ctl_args, field), mv, h }

static const struct ctl_option opt_url = OPT("--url", CTL_OPT_STRING, url, "URL",
	"the admin API (env BOOTSTRAPCTL_URL; default " CTL_DEFAULT_URL ")");
static const struct ctl_option opt_token = OPT("--token", CTL_OPT_STRING, token, "TOKEN",
	"the bearer token (env BOOTSTRAPCTL_TOKEN, which ps does not show)");
static const struct ctl_option opt_cacert = OPT("--cacert", CTL_OPT_STRING, cacert, "FILE",
	"CA certificates (PEM) to verify an https:// URL with (env BOOTSTRAPCTL_CACERT)");
static const struct ctl_option opt_insecure = OPT("--insecure", CTL_OPT_FLAG, insecure, NULL,
	"do not verify the server's certificate and name (for tests, never in production)");
static const struct ctl_option opt_json = OPT("--json", CTL_OPT_FLAG, json, NULL,
	"print the API's JSON answer as it is");
static const struct ctl_option opt_timeout = OPT("--timeout", CTL_OPT_NUMBER, timeout_s, "SECONDS",
	"the most one request may take (default 30)");
static const struct ctl_option opt_help = { "--help", "-h", CTL_OPT_FLAG, offsetof(struct ctl_args, help), NULL,
	"this help; for a command: bootstrapctl help COMMAND, or COMMAND --help" };
static const struct ctl_option opt_version = OPT("--version", CTL_OPT_FLAG, version, NULL,
	"print the version");

static const struct ctl_option *const ctl_globals[] = {
	&opt_url, &opt_token, &opt_cacert, &opt_insecure, &opt_json, &opt_timeout, &opt_help, &opt_version, NULL,
};

static const struct ctl_option opt_home_region = OPT("--home-region", CTL_OPT_STRING, home_region, "REGION",
	"the product's home region (required)");
static const struct ctl_option opt_home_instance = OPT("--home-instance", CTL_OPT_STRING, home_instance,
	"INSTANCE", "its instance (default: the region's default instance)");
static const struct ctl_option opt_account = OPT("--account", CTL_OPT_STRING, account, "ACCOUNT",
	"the product's account (default: default)");
static const struct ctl_option opt_locked = OPT("--locked", CTL_OPT_FLAG, locked, NULL,
	"its devices were authorized or transferred: none may be distributed");
static const struct ctl_option opt_bootstrap_auth = OPT("--bootstrap-auth", CTL_OPT_STRING, bootstrap_auth,
	"MODE", "none (default) or required: signed bootstraps only");
static const struct ctl_option opt_dynreg = OPT("--dynamic-registration", CTL_OPT_STRING, dynamic_registration,
	"MODE", "off (default), preregistered or open");
static const struct ctl_option opt_pre_auth = OPT("--pre-auth", CTL_OPT_FLAG, pre_auth, NULL,
	"allow HTTPS authentication before MQTT (POST /auth/devicename)");
static const struct ctl_option opt_count = OPT("--count", CTL_OPT_NUMBER, count, "N",
	"have the service make N devices (names dev- and 16 hex digits)");
static const struct ctl_option opt_ip = OPT("--ip", CTL_OPT_STRING, ip, "ADDR",
	"the device's address, IPv4 or IPv6 (required)");
static const struct ctl_option opt_strategy = OPT("--strategy", CTL_OPT_STRING, strategy, "STRATEGY",
	"region (default) or nearest");
static const struct ctl_option opt_target_region = OPT("--target-region", CTL_OPT_STRING, target_region,
	"REGION", "region: the region to move to (required)");
static const struct ctl_option opt_target_instance = OPT("--target-instance", CTL_OPT_STRING, target_instance,
	"INSTANCE", "region: its instance (default: the region's default instance)");
static const struct ctl_option opt_regions = OPT("--regions", CTL_OPT_STRING, regions, "A,B,...",
	"nearest: the candidates, each REGION or REGION:INSTANCE (required)");
static const struct ctl_option opt_target_account = OPT("--target-account", CTL_OPT_STRING, target_account,
	"ACCOUNT", "move the devices into this account (needs --auth-code)");
static const struct ctl_option opt_auth_code = OPT("--auth-code", CTL_OPT_STRING, auth_code, "CODE",
	"the code issued for the target account (bootstrapctl auth-code)");
static const struct ctl_option opt_wait = OPT("--wait", CTL_OPT_FLAG, wait, NULL,
	"follow the batch (on stderr) until it is completed or failed; exit 1 if failed");
static const struct ctl_option opt_watch = OPT("--watch", CTL_OPT_FLAG, watch, NULL,
	"follow it until completed or failed (a progress bar on a terminal); exit 1 if failed");
static const struct ctl_option opt_limit = OPT("--limit", CTL_OPT_NUMBER, limit, "N",
	"batches on the page, 1-100 (default 20)");
static const struct ctl_option opt_cursor = OPT("--cursor", CTL_OPT_STRING, cursor, "CURSOR",
	"the page after the one that named this cursor");

static const struct ctl_option *const opts_none[] = { NULL };
static const struct ctl_option *const opts_product_put[] = {
	&opt_home_region, &opt_home_instance, &opt_account, &opt_locked, &opt_bootstrap_auth, &opt_dynreg,
	&opt_pre_auth, NULL,
};
static const struct ctl_option *const opts_register[] = { &opt_count, NULL };
static const struct ctl_option *const opts_resolve[] = { &opt_ip, NULL };
static const struct ctl_option *const opts_batch_create[] = {
	&opt_strategy, &opt_target_region, &opt_target_instance, &opt_regions, &opt_target_account, &opt_auth_code,
	&opt_wait, NULL,
};
static const struct ctl_option *const opts_status[] = { &opt_watch, NULL };
static const struct ctl_option *const opts_list[] = { &opt_limit, &opt_cursor, NULL };
static const struct ctl_option *const opts_retry[] = { &opt_wait, NULL };

static const char *const pos_pk[] = { "PK" };
static const char *const pos_pk_file[] = { "PK", "FILE" };
static const char *const pos_pk_dn[] = { "PK", "DN" };
static const char *const pos_file[] = { "FILE" };
static const char *const pos_id[] = { "ID" };
static const char *const pos_account[] = { "ACCOUNT" };

static void ctl_err(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void ctl_err(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
}

static int check_product_put(const struct ctl_args *a, char *err, size_t errsize)
{
	if (a->home_region == NULL) {
		ctl_err(err, errsize, "--home-region is required");
		return -1;
	}
	return 0;
}

static int check_register(const struct ctl_args *a, char *err, size_t errsize)
{
	if ((a->npos == 2) == (a->count > 0)) {
		ctl_err(err, errsize, "give either FILE or --count N");
		return -1;
	}
	return 0;
}

static int check_resolve(const struct ctl_args *a, char *err, size_t errsize)
{
	if (a->ip == NULL) {
		ctl_err(err, errsize, "--ip is required");
		return -1;
	}
	return 0;
}

static int check_batch_create(const struct ctl_args *a, char *err, size_t errsize)
{
	bool nearest = a->strategy != NULL && strcmp(a->strategy, "nearest") == 0;

	if (a->strategy != NULL && !nearest && strcmp(a->strategy, "region") != 0)
		ctl_err(err, errsize, "--strategy: region or nearest, not \"%s\"", a->strategy);
	else if (!nearest && a->target_region == NULL)
		ctl_err(err, errsize, "--strategy region needs --target-region");
	else if (!nearest && a->regions != NULL)
		ctl_err(err, errsize, "--regions is for --strategy nearest");
	else if (nearest && a->regions == NULL)
		ctl_err(err, errsize, "--strategy nearest needs --regions");
	else if (nearest && (a->target_region != NULL || a->target_instance != NULL))
		ctl_err(err, errsize, "--target-region and --target-instance are for --strategy region");
	else if (a->auth_code != NULL && a->target_account == NULL)
		ctl_err(err, errsize, "--auth-code goes with --target-account");
	else
		return 0;
	return -1;
}

static int check_batch_id(const struct ctl_args *a, char *err, size_t errsize)
{
	const char *id = a->pos[0];

	if (id[0] == '\0' || strspn(id, "0123456789") != strlen(id) || strlen(id) > 20) {
		ctl_err(err, errsize, "ID: a batch id is a number, not \"%s\"", id);
		return -1;
	}
	return 0;
}

/* A string builder that remembers running out of memory, so that callers
 * check once at the end. */
struct ctl_buf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void buf_addn(struct ctl_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *s2 = realloc(b->s, cap);
		if (s2 == NULL) {
			b->oom = true;
			return;
		}
		b->s = s2;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_add(struct ctl_buf *b, const char *s)
{
	buf_addn(b, s, strlen(s));
}

static void buf_add_escaped(struct ctl_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-._~@:", *p) != NULL) {
			buf_addn(b, (const char *)p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			buf_addn(b, e, 3);
		}
	}
}

/* Owned by the caller; NULL when out of memory. */
static char *buf_take(struct ctl_buf *b)
{
	if (b->oom) {
		free(b->s);
		return NULL;
	}
	return b->s ? b->s : strdup("");
}

char *ctl_escape(const char *s)
{
	struct ctl_buf b = { 0 };

	buf_add_escaped(&b, s);
	return buf_take(&b);
}

/* R->path: the N PARTS one after the other, those at odd indexes escaped
 * (the command's arguments between literal pieces). */
static int ctl_path(struct ctl_request *r, size_t n, const char *const *parts)
{
	struct ctl_buf b = { 0 };

	for (size_t i = 0; i < n; i++) {
		if (i % 2)
			buf_add_escaped(&b, parts[i]);
		else
			buf_add(&b, parts[i]);
	}
	r->path = buf_take(&b);
	return r->path ? 0 : -1;
}

/* PATH and the query made of the N (name, value) PAIRS whose value is set. */
static int ctl_path_query(struct ctl_request *r, const char *path, size_t n, const char *const pairs[][2])
{
	struct ctl_buf b = { 0 };
	bool first = true;

	buf_add(&b, path);
	for (size_t i = 0; i < n; i++) {
		if (pairs[i][1] == NULL)
			continue;
		buf_add(&b, first ? "?" : "&");
		buf_add(&b, pairs[i][0]);
		buf_add(&b, "=");
		buf_add_escaped(&b, pairs[i][1]);
		first = false;
	}
	r->path = buf_take(&b);
	return r->path ? 0 : -1;
}

static void gen_kv(yajl_gen g, const char *key, const char *value)
{
	yajl_gen_string(g, (const unsigned char *)key, strlen(key));
	yajl_gen_string(g, (const unsigned char *)value, strlen(value));
}

/* R->body: what G made (then freed). */
static int ctl_body_take(struct ctl_request *r, yajl_gen g)
{
	const unsigned char *buf;
	size_t len;
	int rc = -1;

	if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok || (r->body = malloc(len + 1)) == NULL)
		goto out;
	memcpy(r->body, buf, len);
	r->body[len] = '\0';
	r->body_len = len;
	r->content_type = "application/json";
	rc = 0;
out:
	yajl_gen_free(g);
	return rc;
}

static int build_get(struct ctl_request *r, const char *path)
{
	r->method = "GET";
	r->path = strdup(path);
	return r->path ? 0 : -1;
}

static int build_regions(const struct ctl_args *a, struct ctl_request *r)
{
	(void)a;
	return build_get(r, "/v1/regions");
}

static int build_stats(const struct ctl_args *a, struct ctl_request *r)
{
	(void)a;
	return build_get(r, "/v1/stats");
}

static int build_template(const struct ctl_args *a, struct ctl_request *r)
{
	(void)a;
	return build_get(r, "/v1/batches/template.csv");
}

static int build_product_put(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/products/", a->pos[0] };
	yajl_gen g;

	r->method = "PUT";
	if (ctl_path(r, 2, path) < 0 || (g = yajl_gen_alloc(NULL)) == NULL)
		return -1;
	yajl_gen_map_open(g);
	gen_kv(g, "homeRegion", a->home_region);
	if (a->home_instance)
		gen_kv(g, "homeInstance", a->home_instance);
	if (a->account)
		gen_kv(g, "account", a->account);
	yajl_gen_string(g, (const unsigned char *)"locked", 6);
	yajl_gen_bool(g, a->locked);
	if (a->bootstrap_auth)
		gen_kv(g, "bootstrapAuth", a->bootstrap_auth);
	if (a->dynamic_registration)
		gen_kv(g, "dynamicRegistration", a->dynamic_registration);
	yajl_gen_string(g, (const unsigned char *)"preAuth", 7);
	yajl_gen_bool(g, a->pre_auth);
	yajl_gen_map_close(g);
	return ctl_body_take(r, g);
}

static int build_product_get(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/products/", a->pos[0] };

	r->method = "GET";
	return ctl_path(r, 2, path);
}

static int build_register(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/products/", a->pos[0], "/devices" };
	yajl_gen g;

	r->method = "POST";
	if (ctl_path(r, 3, path) < 0)
		return -1;
	if (a->npos == 2) {
		r->file = a->pos[1];
		r->content_type = "text/csv";
		return 0;
	}
	if ((g = yajl_gen_alloc(NULL)) == NULL)
		return -1;
	yajl_gen_map_open(g);
	yajl_gen_string(g, (const unsigned char *)"count", 5);
	yajl_gen_integer(g, a->count);
	yajl_gen_map_close(g);
	return ctl_body_take(r, g);
}

static int build_device_get(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/devices/", a->pos[0], "/", a->pos[1] };

	r->method = "GET";
	return ctl_path(r, 4, path);
}

static int build_resolve(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/devices/", a->pos[0], "/", a->pos[1], "/resolve?ip=", a->ip };

	r->method = "GET";
	return ctl_path(r, 6, path);
}

static int build_batch_create(const struct ctl_args *a, struct ctl_request *r)
{
	const char *const query[][2] = {
		{ "strategy", a->strategy ? a->strategy : "region" },
		{ "targetRegion", a->target_region },
		{ "targetInstance", a->target_instance },
		{ "regions", a->regions },
		{ "targetAccount", a->target_account },
		{ "authCode", a->auth_code },
	};

	r->method = "POST";
	r->file = a->pos[0];
	r->content_type = "text/csv";
	return ctl_path_query(r, "/v1/batches", sizeof(query) / sizeof(query[0]), query);
}

static int build_batch_status(const struct ctl_args *a, struct ctl_request *r)
{
	return ctl_request_batch(a->pos[0], r);
}

static int build_batch_results(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/batches/", a->pos[0], "/results" };

	r->method = "GET";
	return ctl_path(r, 3, path);
}

static int build_batch_list(const struct ctl_args *a, struct ctl_request *r)
{
	char limit[24];
	const char *const query[][2] = {
		{ "limit", a->limit > 0 ? limit : NULL },
		{ "cursor", a->cursor },
	};

	snprintf(limit, sizeof(limit), "%ld", a->limit);
	r->method = "GET";
	return ctl_path_query(r, "/v1/batches", 2, query);
}

static int build_batch_retry(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/batches/", a->pos[0], "/retry" };

	r->method = "POST";
	return ctl_path(r, 3, path);
}

static int build_auth_code(const struct ctl_args *a, struct ctl_request *r)
{
	const char *path[] = { "/v1/accounts/", a->pos[0], "/auth-codes" };

	r->method = "POST";
	return ctl_path(r, 3, path);
}

const struct ctl_command ctl_commands[] = {
	{ "regions", CTL_REGIONS, "", "the region catalog in service (GET /v1/regions)",
		"Prints one region a line: its id, its name and its instances, the\n"
		"default one marked with *.\n",
		0, 0, NULL, opts_none, NULL, build_regions },
	{ "product put", CTL_PRODUCT_PUT,
		"PK --home-region REGION [--home-instance INSTANCE] [--account ACCOUNT] [--locked]\n"
		"    [--bootstrap-auth MODE] [--dynamic-registration MODE] [--pre-auth]",
		"create or update a product (PUT /v1/products/PK)",
		"The product is written whole: a field not given takes its default, also on\n"
		"an update. Prints the product as the service keeps it (the product secret\n"
		"too, the one time the service shows it: when this call first turns\n"
		"dynamic registration on).\n",
		1, 1, pos_pk, opts_product_put, check_product_put, build_product_put },
	{ "product get", CTL_PRODUCT_GET, "PK", "show a product (GET /v1/products/PK)",
		"Prints the product as indented JSON.\n",
		1, 1, pos_pk, opts_none, NULL, build_product_get },
	{ "devices register", CTL_DEVICES_REGISTER, "PK FILE|--count N",
		"register devices; prints their secrets (POST /v1/products/PK/devices)",
		"FILE is a CSV with the header deviceName, or deviceName,deviceSecret\n"
		"(- reads it from stdin). --count N has the service make N devices, named\n"
		"dev- and 16 hex digits. Prints the service's CSV,\n"
		"productKey,deviceName,deviceSecret: the secrets it made are shown this\n"
		"once. All or nothing: one bad row registers no device.\n",
		1, 2, pos_pk_file, opts_register, check_register, build_register },
	{ "device get", CTL_DEVICE_GET, "PK DN", "show a device (GET /v1/devices/PK/DN)",
		"Prints its registry entry, assignment, status and notify state as indented\n"
		"JSON (never its secret).\n",
		2, 2, pos_pk_dn, opts_none, NULL, build_device_get },
	{ "resolve", CTL_RESOLVE, "PK DN --ip ADDR", "explain what the device would get from ADDR",
		"Which region, instance and endpoints the device would be answered from\n"
		"that address, and why (GET /v1/devices/PK/DN/resolve), as indented JSON.\n"
		"Changes nothing.\n",
		2, 2, pos_pk_dn, opts_resolve, check_resolve, build_resolve },
	{ "batch template", CTL_BATCH_TEMPLATE, "", "print the batch CSV template",
		"The header and one example row (GET /v1/batches/template.csv).\n",
		0, 0, NULL, opts_none, NULL, build_template },
	{ "batch create", CTL_BATCH_CREATE,
		"FILE --strategy region --target-region REGION [--target-instance INSTANCE]\n"
		"    | FILE --strategy nearest --regions A,B,...\n"
		"    [--target-account ACCOUNT --auth-code CODE] [--wait]",
		"distribute the devices of FILE (POST /v1/batches)",
		"FILE is a CSV with the header productKey,deviceName (- reads stdin).\n"
		"Prints the batch id. With --wait it then follows the batch on stderr\n"
		"until it is completed or failed, and exits 1 if it failed. The whole\n"
		"batch is refused (exit 1, nothing written) when a row or a parameter is\n"
		"wrong; the message names it.\n",
		1, 1, pos_file, opts_batch_create, check_batch_create, build_batch_create },
	{ "batch status", CTL_BATCH_STATUS, "ID [--watch]", "show a batch's progress (GET /v1/batches/ID)",
		"Prints its state and counts, strategy, targets, times and notify counts.\n"
		"--watch follows it until completed or failed: a progress bar when stdout\n"
		"is a terminal, else one line each time its counts change (with --json,\n"
		"each new answer on a line). \"completed\" does not mean every device\n"
		"succeeded: see batch results.\n",
		1, 1, pos_id, opts_status, check_batch_id, build_batch_status },
	{ "batch results", CTL_BATCH_RESULTS, "ID", "print a batch's per-device results (CSV)",
		"productKey,deviceName,result,code,message,notify, one row per applied\n"
		"row in upload order (GET /v1/batches/ID/results).\n",
		1, 1, pos_id, opts_none, check_batch_id, build_batch_results },
	{ "batch list", CTL_BATCH_LIST, "[--limit N] [--cursor CURSOR]", "list batches, newest first",
		"One batch a line (GET /v1/batches). When there are more, the cursor of\n"
		"the next page is printed on stderr.\n",
		0, 0, NULL, opts_list, NULL, build_batch_list },
	{ "batch retry", CTL_BATCH_RETRY, "ID [--wait]", "put a failed batch back to work",
		"Only a failed batch can be retried (POST /v1/batches/ID/retry): its rows\n"
		"without a result are applied again. --wait follows it as batch create\n"
		"--wait does.\n",
		1, 1, pos_id, opts_retry, check_batch_id, build_batch_retry },
	{ "auth-code", CTL_AUTH_CODE, "ACCOUNT", "issue a code for moving devices into ACCOUNT",
		"Prints the 6-digit code (POST /v1/accounts/ACCOUNT/auth-codes) on stdout,\n"
		"and how long it is valid on stderr. The sending operator passes it to\n"
		"batch create --target-account ACCOUNT --auth-code CODE; it is good for\n"
		"one batch.\n",
		1, 1, pos_account, opts_none, NULL, build_auth_code },
	{ "stats", CTL_STATS, "", "device, distribution and batch counts (GET /v1/stats)",
		"Devices by status, distributed devices by region, activations through\n"
		"bootstrap and batches by status.\n",
		0, 0, NULL, opts_none, NULL, build_stats },
};
const size_t ctl_ncommands = sizeof(ctl_commands) / sizeof(ctl_commands[0]);

int ctl_request_build(const struct ctl_args *a, struct ctl_request *out)
{
	memset(out, 0, sizeof(*out));
	if (a->command == NULL || a->command->build == NULL)
		return -1;
	if (a->command->build(a, out) < 0) {
		ctl_request_deinit(out);
		return -1;
	}
	return 0;
}

int ctl_request_batch(const char *id, struct ctl_request *out)
{
	const char *path[] = { "/v1/batches/", id };

	memset(out, 0, sizeof(*out));
	out->method = "GET";
	return ctl_path(out, 2, path);
}

void ctl_request_deinit(struct ctl_request *r)
{
	if (r == NULL)
		return;
	free(r->path);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* The command line. */

/* The length of the first word of NAME ("batch" of "batch create"). */
static size_t ctl_word1(const char *name)
{
	return strcspn(name, " ");
}

static bool ctl_is_word(const char *arg, const char *name, size_t len)
{
	return strlen(arg) == len && strncmp(arg, name, len) == 0;
}

/* The command WORDS (N of them) name, with *USED the words it took; or NULL,
 * with *GROUP the first word when it starts some commands ("batch"). */
static const struct ctl_command *ctl_lookup(char *const *words, int n, int *used, const char **group)
{
	*group = NULL;
	for (size_t i = 0; i < ctl_ncommands; i++) {
		const char *name = ctl_commands[i].name;
		size_t l1 = ctl_word1(name);
		if (n < 1 || !ctl_is_word(words[0], name, l1))
			continue;
		if (name[l1] == '\0') {
			*used = 1;
			return &ctl_commands[i];
		}
		if (n >= 2 && strcmp(words[1], name + l1 + 1) == 0) {
			*used = 2;
			return &ctl_commands[i];
		}
		*group = words[0];
	}
	return NULL;
}

static const struct ctl_option *ctl_find_option(const struct ctl_option *const *list, const char *name, size_t len)
{
	for (; list && *list; list++) {
		if (ctl_is_word((*list)->name, name, len) || ((*list)->alias && ctl_is_word((*list)->alias, name, len)))
			return *list;
	}
	return NULL;
}

static int ctl_set_number(const char *name, const char *value, long *out, char *err, size_t errsize)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)value[0]) || (v = strtol(value, &end, 10), *end != '\0') || v <= 0 ||
	    v > 1000000000L) {
		ctl_err(err, errsize, "%s: a positive number, not \"%s\"", name, value);
		return -1;
	}
	*out = v;
	return 0;
}

/* Takes the option at ARGV[*I] ("--name", "--name=value" or "--name value")
 * into A, looked up among the global ones and COMMAND's; *I moves past it. */
static int ctl_take_option(int argc, char *const *argv, int *i, const struct ctl_command *command,
	struct ctl_args *a, char *err, size_t errsize)
{
	const char *arg = argv[*i], *eq = strchr(arg, '='), *value;
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const struct ctl_option *o = ctl_find_option(ctl_globals, arg, len);
	char *field;

	if (o == NULL && command)
		o = ctl_find_option(command->options, arg, len);
	if (o == NULL) {
		ctl_err(err, errsize, "unknown option %.*s%s%s", (int)len, arg, command ? " for " : "",
			command ? command->name : "");
		return -1;
	}
	field = (char *)a + o->offset;
	if (o->type == CTL_OPT_FLAG) {
		if (eq) {
			ctl_err(err, errsize, "%s takes no value", o->name);
			return -1;
		}
		*(bool *)field = true;
		return 0;
	}
	if (eq) {
		value = eq + 1;
	} else if (*i + 1 < argc) {
		value = argv[++*i];
	} else {
		ctl_err(err, errsize, "%s needs a value (%s)", o->name, o->metavar);
		return -1;
	}
	if (o->type == CTL_OPT_NUMBER)
		return ctl_set_number(o->name, value, (long *)field, err, errsize);
	*(const char **)field = value;
	return 0;
}

static bool ctl_is_option(const char *arg)
{
	return arg[0] == '-' && arg[1] != '\0';
}

/* The command (or help topic) named at ARGV[*I]; *I moves past it. A group
 * word alone ("batch") is taken as a help topic: an error later unless the
 * line asks for help. */
static int ctl_take_command(int argc, char *const *argv, int *i, struct ctl_args *a, char *err, size_t errsize)
{
	const char *group;
	int used = 0;

	if (strcmp(argv[*i], "help") == 0) {
		a->help = true;
		if (++*i >= argc || ctl_is_option(argv[*i]))
			return 0;
	}
	a->command = ctl_lookup(argv + *i, argc - *i, &used, &group);
	if (a->command) {
		*i += used;
		return 0;
	}
	if (group == NULL) {
		ctl_err(err, errsize, "unknown command \"%s\"", argv[*i]);
		return -1;
	}
	a->topic = group;
	if (*i + 1 < argc && !ctl_is_option(argv[*i + 1])) {
		ctl_err(err, errsize, "unknown command \"%s %s\"", group, argv[*i + 1]);
		return -1;
	}
	(*i)++;
	return 0;
}

static bool ctl_has_control(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	}
	return false;
}

/* What the command line cannot say alone: the environment, the URL, the
 * command's arguments. */
static int ctl_args_check(const struct ctl_args *a, char *err, size_t errsize)
{
	const struct ctl_command *c = a->command;

	if (strncmp(a->url, "http://", 7) != 0 && strncmp(a->url, "https://", 8) != 0) {
		ctl_err(err, errsize, "--url: http://HOST:PORT or https://HOST:PORT, not \"%s\"", a->url);
		return -1;
	}
	if (a->token && ctl_has_control(a->token)) {
		ctl_err(err, errsize, "the token holds a control character");
		return -1;
	}
	if (c == NULL && a->topic) {
		ctl_err(err, errsize, "%s: which command? (bootstrapctl help %s)", a->topic, a->topic);
		return -1;
	}
	if (c == NULL) {
		ctl_err(err, errsize, "a command is needed");
		return -1;
	}
	if (a->npos < c->min_pos) {
		ctl_err(err, errsize, "%s: missing %s", c->name, c->pos_names[a->npos]);
		return -1;
	}
	return c->check ? c->check(a, err, errsize) : 0;
}

int ctl_args_parse(int argc, char *const *argv, const struct ctl_env *env, struct ctl_args *out, char *err,
	size_t errsize)
{
	bool options_end = false;
	int i = 1;

	memset(out, 0, sizeof(*out));
	out->timeout_s = CTL_DEFAULT_TIMEOUT_S;
	err[0] = '\0';
	for (; i < argc && ctl_is_option(argv[i]) && strcmp(argv[i], "--") != 0; i++) {
		if (ctl_take_option(argc, argv, &i, NULL, out, err, errsize) < 0)
			return -1;
	}
	if (i < argc && strcmp(argv[i], "--") != 0 && ctl_take_command(argc, argv, &i, out, err, errsize) < 0)
		return -1;
	for (; i < argc; i++) {
		if (!options_end && strcmp(argv[i], "--") == 0) {
			options_end = true;
		} else if (!options_end && ctl_is_option(argv[i])) {
			if (ctl_take_option(argc, argv, &i, out->command, out, err, errsize) < 0)
				return -1;
		} else if (out->command == NULL || out->npos >= out->command->max_pos) {
			ctl_err(err, errsize, "unexpected argument \"%s\"", argv[i]);
			return -1;
		} else {
			out->pos[out->npos++] = argv[i];
		}
	}
	/* An empty variable is as good as none (VAR= in a script). */
	if (out->url == NULL)
		out->url = env && env->url && env->url[0] ? env->url : CTL_DEFAULT_URL;
	if (out->token == NULL && env && env->token && env->token[0])
		out->token = env->token;
	if (out->cacert == NULL && env && env->cacert && env->cacert[0])
		out->cacert = env->cacert;
	if (out->help || out->version)
		return 0;
	return ctl_args_check(out, err, errsize);
}

/* Help. */

static void ctl_print_options(FILE *out, const struct ctl_option *const *list)
{
	for (; *list; list++) {
		char left[64];
		const struct ctl_option *o = *list;
		snprintf(left, sizeof(left), "%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name,
			o->metavar ? " " : "", o->metavar ? o->metavar : "");
		fprintf(out, "  %-32s %s\n", left, o->help);
	}
}

static void ctl_print_command_line(FILE *out, const struct ctl_command *c)
{
	fprintf(out, "  %s%s%s\n      %s\n", c->name, c->synopsis[0] ? " " : "", c->synopsis, c->summary);
}

static bool ctl_in_group(const struct ctl_command *c, const char *group)
{
	return ctl_is_word(group, c->name, ctl_word1(c->name)) && c->name[ctl_word1(c->name)] != '\0';
}

static void ctl_usage_line(FILE *out, const char *lead, const struct ctl_command *c)
{
	fprintf(out, "%sbootstrapctl %s%s%s\n", lead, c->name, c->synopsis[0] ? " " : "", c->synopsis);
}

void ctl_usage(FILE *out, const struct ctl_args *a)
{
	if (a->command) {
		ctl_usage_line(out, "usage: ", a->command);
		fprintf(out, "(bootstrapctl help %s for more)\n", a->command->name);
		return;
	}
	if (a->topic) {
		fprintf(out, "usage:\n");
		for (size_t i = 0; i < ctl_ncommands; i++) {
			if (ctl_in_group(&ctl_commands[i], a->topic))
				ctl_usage_line(out, "  ", &ctl_commands[i]);
		}
		return;
	}
	fprintf(out, "usage: bootstrapctl [OPTIONS] COMMAND [ARGS]   (bootstrapctl --help lists the commands)\n");
}

void ctl_help(FILE *out, const struct ctl_args *a)
{
	const struct ctl_command *c = a->command;

	if (c) {
		ctl_usage_line(out, "usage: ", c);
		fprintf(out, "\n%c%s.\n\n%s", toupper((unsigned char)c->summary[0]), c->summary + 1, c->details);
		if (c->options[0]) {
			fprintf(out, "\nOptions:\n");
			ctl_print_options(out, c->options);
		}
		fprintf(out, "\nGlobal options (bootstrapctl --help): --url, --token, --cacert, --insecure, --json, "
			     "--timeout.\n");
		return;
	}
	if (a->topic) {
		fprintf(out, "bootstrapctl %s commands:\n", a->topic);
		for (size_t i = 0; i < ctl_ncommands; i++) {
			if (ctl_in_group(&ctl_commands[i], a->topic))
				ctl_print_command_line(out, &ctl_commands[i]);
		}
		return;
	}
	fprintf(out, "usage: bootstrapctl [OPTIONS] COMMAND [ARGS]\n\n"
		     "The bootstrapd admin API from the command line (docs/bootstrapctl.md).\n\nCommands:\n");
	for (size_t i = 0; i < ctl_ncommands; i++)
		ctl_print_command_line(out, &ctl_commands[i]);
	fprintf(out, "\nOptions (before or after the command):\n");
	ctl_print_options(out, ctl_globals);
	fprintf(out, "\nExit status: 0 done, 1 refused by the API, 2 bad usage, 3 the service cannot be reached.\n");
}

/* Answers. */

static yajl_val ctl_get(yajl_val obj, const char *key)
{
	const char *path[] = { key, NULL };

	return obj ? yajl_tree_get(obj, path, yajl_t_any) : NULL;
}

static const char *ctl_str(yajl_val obj, const char *key)
{
	yajl_val v = ctl_get(obj, key);

	return YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
}

/* The integer KEY of OBJ, or -1. */
static long long ctl_int(yajl_val obj, const char *key)
{
	yajl_val v = ctl_get(obj, key);

	return YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : -1;
}

int ctl_batch_read(yajl_val v, struct ctl_batch *b)
{
	memset(b, 0, sizeof(*b));
	b->id = ctl_str(v, "batchId");
	b->status = ctl_str(v, "status");
	b->error = ctl_str(v, "error");
	b->total = ctl_int(v, "total");
	b->processed = ctl_int(v, "processed");
	b->succeeded = ctl_int(v, "succeeded");
	b->failed = ctl_int(v, "failed");
	if (b->id == NULL || b->status == NULL || b->total < 0)
		return -1;
	/* The create answer has no counts yet. */
	b->processed = b->processed < 0 ? 0 : b->processed;
	b->succeeded = b->succeeded < 0 ? 0 : b->succeeded;
	b->failed = b->failed < 0 ? 0 : b->failed;
	return 0;
}

bool ctl_batch_done(const struct ctl_batch *b)
{
	return strcmp(b->status, "completed") == 0 || strcmp(b->status, "failed") == 0;
}

void ctl_batch_line(const struct ctl_batch *b, char *out, size_t size)
{
	int n = snprintf(out, size, "batch %s: %s, %lld/%lld processed, %lld succeeded, %lld failed", b->id, b->status,
		b->processed, b->total, b->succeeded, b->failed);

	if (b->error && n >= 0 && (size_t)n < size)
		snprintf(out + n, size - (size_t)n, "; error: %s", b->error);
}

void ctl_progress_bar(long long done, long long total, unsigned width, char *out, size_t size)
{
	char cells[201];
	long long pct;
	unsigned full;

	if (width > 200)
		width = 200;
	if (total <= 0 || done > total)
		done = total = 1;
	if (done < 0)
		done = 0;
	full = (unsigned)(done * width / total);
	pct = done * 100 / total;
	memset(cells, '#', full);
	memset(cells + full, '.', width - full);
	cells[width] = '\0';
	snprintf(out, size, "[%s] %3lld%%", cells, pct);
}

void ctl_batch_bar_line(const struct ctl_batch *b, char *out, size_t size)
{
	char bar[48];

	ctl_progress_bar(b->processed, b->total, 30, bar, sizeof(bar));
	snprintf(out, size, "batch %s %s %lld/%lld %s, %lld failed", b->id, bar, b->processed, b->total, b->status,
		b->failed);
}

static const char *ctl_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

static void ctl_print_targets(FILE *out, yajl_val v)
{
	yajl_val cands = ctl_get(v, "candidates");

	fprintf(out, "strategy: %s (%s) ->", ctl_or(ctl_str(v, "strategy"), "?"), ctl_or(ctl_str(v, "kind"), "?"));
	if (YAJL_IS_ARRAY(cands)) {
		for (size_t i = 0; i < cands->u.array.len; i++) {
			yajl_val c = cands->u.array.values[i];
			fprintf(out, "%s %s/%s", i ? "," : "", ctl_or(ctl_str(c, "region"), "?"),
				ctl_or(ctl_str(c, "instance"), "?"));
		}
	} else {
		fprintf(out, " %s/%s", ctl_or(ctl_str(v, "targetRegion"), "?"), ctl_or(ctl_str(v, "targetInstance"), "?"));
	}
	fputc('\n', out);
}

void ctl_batch_print(FILE *out, yajl_val v)
{
	struct ctl_batch b;
	char line[1024];
	yajl_val notify = ctl_get(v, "notify");

	if (ctl_batch_read(v, &b) < 0) {
		fprintf(out, "(not a batch)\n");
		return;
	}
	ctl_batch_line(&b, line, sizeof(line));
	fprintf(out, "%s\n", line);
	ctl_print_targets(out, v);
	const char *account = ctl_str(v, "targetAccount");
	if (account != NULL)
		fprintf(out, "account:  %s\n", account);
	fprintf(out, "created:  %s\nupdated:  %s\n", ctl_or(ctl_str(v, "createdAt"), "-"),
		ctl_or(ctl_str(v, "updatedAt"), "-"));
	if (YAJL_IS_OBJECT(notify))
		fprintf(out, "notify:   %lld pending, %lld sent, %lld acked, %lld none\n", ctl_int(notify, "pending"),
			ctl_int(notify, "sent"), ctl_int(notify, "acked"), ctl_int(notify, "none"));
}

void ctl_stats_print(FILE *out, yajl_val v)
{
	yajl_val dev = ctl_get(v, "devices"), bat = ctl_get(v, "batches");
	const char *path[] = { "distributed", "byRegion", NULL };
	yajl_val by = v ? yajl_tree_get(v, path, yajl_t_object) : NULL;

	fprintf(out, "devices: %lld total, %lld active, %lld inactive\n", ctl_int(dev, "total"),
		ctl_int(dev, "active"), ctl_int(dev, "inactive"));
	fprintf(out, "activations: %lld\n", ctl_int(v, "activations"));
	fprintf(out, "batches: %lld initializing, %lld running, %lld completed, %lld failed\n",
		ctl_int(bat, "initializing"), ctl_int(bat, "running"), ctl_int(bat, "completed"),
		ctl_int(bat, "failed"));
	if (by == NULL || by->u.object.len == 0) {
		fprintf(out, "distributed by region: none\n");
		return;
	}
	fprintf(out, "distributed by region:\n");
	for (size_t i = 0; i < by->u.object.len; i++) {
		yajl_val n = by->u.object.values[i];
		fprintf(out, "  %-24s %lld\n", by->u.object.keys[i], YAJL_IS_INTEGER(n) ? YAJL_GET_INTEGER(n) : -1);
	}
}

static void ctl_print_instances(FILE *out, yajl_val region)
{
	yajl_val inst = ctl_get(region, "instances");

	for (size_t i = 0; YAJL_IS_ARRAY(inst) && i < inst->u.array.len; i++) {
		yajl_val in = inst->u.array.values[i];
		fprintf(out, "%s%s%s", i ? ", " : "", ctl_or(ctl_str(in, "id"), "?"),
			YAJL_IS_TRUE(ctl_get(in, "default")) ? "*" : "");
	}
}

void ctl_regions_print(FILE *out, yajl_val v)
{
	yajl_val regions = ctl_get(v, "regions");
	int wid = 2, wname = 4;

	if (!YAJL_IS_ARRAY(regions)) {
		fprintf(out, "(no regions)\n");
		return;
	}
	for (size_t i = 0; i < regions->u.array.len; i++) {
		int l1 = (int)strlen(ctl_or(ctl_str(regions->u.array.values[i], "id"), "?"));
		int l2 = (int)strlen(ctl_or(ctl_str(regions->u.array.values[i], "name"), ""));
		wid = l1 > wid ? l1 : wid;
		wname = l2 > wname ? l2 : wname;
	}
	fprintf(out, "%-*s  %-*s  %s\n", wid, "ID", wname, "NAME", "INSTANCES (* default)");
	for (size_t i = 0; i < regions->u.array.len; i++) {
		yajl_val r = regions->u.array.values[i];
		fprintf(out, "%-*s  %-*s  ", wid, ctl_or(ctl_str(r, "id"), "?"), wname, ctl_or(ctl_str(r, "name"), ""));
		ctl_print_instances(out, r);
		fputc('\n', out);
	}
}

/* Pretty JSON: yajl's parser events fed straight into a beautifying
 * generator, so numbers keep the digits they came with. */

static int pj_null(void *g)
{
	return yajl_gen_null(g) == yajl_gen_status_ok;
}

static int pj_bool(void *g, int b)
{
	return yajl_gen_bool(g, b) == yajl_gen_status_ok;
}

static int pj_number(void *g, const char *s, size_t len)
{
	return yajl_gen_number(g, s, len) == yajl_gen_status_ok;
}

static int pj_string(void *g, const unsigned char *s, size_t len)
{
	return yajl_gen_string(g, s, len) == yajl_gen_status_ok;
}

static int pj_map_open(void *g)
{
	return yajl_gen_map_open(g) == yajl_gen_status_ok;
}

static int pj_map_close(void *g)
{
	return yajl_gen_map_close(g) == yajl_gen_status_ok;
}

static int pj_array_open(void *g)
{
	return yajl_gen_array_open(g) == yajl_gen_status_ok;
}

static int pj_array_close(void *g)
{
	return yajl_gen_array_close(g) == yajl_gen_status_ok;
}

int ctl_json_pretty(FILE *out, const char *text, size_t len)
{
	static const yajl_callbacks cb = {
		pj_null, pj_bool, NULL, NULL, pj_number, pj_string,
		pj_map_open, pj_string, pj_map_close, pj_array_open, pj_array_close,
	};
	yajl_gen g = yajl_gen_alloc(NULL);
	yajl_handle h = NULL;
	const unsigned char *buf;
	size_t blen;
	int rc = -1;

	if (g == NULL || (h = yajl_alloc(&cb, NULL, g)) == NULL)
		goto out;
	yajl_gen_config(g, yajl_gen_beautify, 1);
	yajl_gen_config(g, yajl_gen_indent_string, "  ");
	if (yajl_parse(h, (const unsigned char *)text, len) != yajl_status_ok || yajl_complete_parse(h) != yajl_status_ok ||
	    yajl_gen_get_buf(g, &buf, &blen) != yajl_gen_status_ok || blen == 0)
		goto out;
	fwrite(buf, 1, blen, out);
	if (buf[blen - 1] != '\n')
		fputc('\n', out);
	rc = 0;
out:
	if (h)
		yajl_free(h);
	if (g)
		yajl_gen_free(g);
	return rc;
}

int ctl_api_error(const char *body, size_t len, char *out, size_t size)
{
	const char *path[] = { "error", NULL };
	yajl_val root, e, details;
	const char *code, *message;
	size_t n;

	out[0] = '\0';
	if (body == NULL || len == 0 || body[len] != '\0' || (root = yajl_tree_parse(body, NULL, 0)) == NULL)
		return -1;
	e = yajl_tree_get(root, path, yajl_t_object);
	code = ctl_str(e, "code");
	message = ctl_str(e, "message");
	if (code == NULL || message == NULL) {
		yajl_tree_free(root);
		return -1;
	}
	snprintf(out, size, "%s (%s)", message, code);
	details = ctl_get(e, "details");
	for (size_t i = 0; YAJL_IS_ARRAY(details) && i < details->u.array.len; i++) {
		const char *d = YAJL_GET_STRING(details->u.array.values[i]);
		n = strlen(out);
		if (d && n < size)
			snprintf(out + n, size - n, "; %s", d);
	}
	yajl_tree_free(root);
	return 0;
}
