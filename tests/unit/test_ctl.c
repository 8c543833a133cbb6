#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <yajl/yajl_tree.h>

#include "ctl.h"

#define MAX_WORDS 24

static char err[512];

/* Parses the words of LINE (split at spaces; "bootstrapctl" put first)
 * with ENV into *A: ctl_args_parse's result. The words stay valid until the
 * next call, as A's strings point into them. */
static int parse_env(const char *line, const struct ctl_env *env, struct ctl_args *a)
{
	static char buf[1024];
	static char *words[MAX_WORDS];
	int n = 0;

	snprintf(buf, sizeof(buf), "bootstrapctl %s", line);
	for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && n < MAX_WORDS; w = strtok_r(NULL, " ", &save))
		words[n++] = w;
	return ctl_args_parse(n, words, env, a, err, sizeof(err));
}

static int parse(const char *line, struct ctl_args *a)
{
	return parse_env(line, NULL, a);
}

/* LINE parses to a command named NAME. */
static void expect_command(const char *line, const char *name, struct ctl_args *a)
{
	if (parse(line, a) < 0)
		fail_msg("\"%s\": %s", line, err);
	assert_non_null(a->command);
	assert_string_equal(a->command->name, name);
}

/* LINE is refused with an error holding WHAT. */
static void expect_error(const char *line, const char *what)
{
	struct ctl_args a;

	if (parse(line, &a) == 0)
		fail_msg("\"%s\" was accepted", line);
	if (strstr(err, what) == NULL)
		fail_msg("\"%s\": error \"%s\" does not say \"%s\"", line, err, what);
}

static void test_defaults_and_env(void **state)
{
	const struct ctl_env env = { "https://admin.example:9443", "env-token", "/etc/ca.pem" };
	struct ctl_args a;

	(void)state;
	expect_command("stats", "stats", &a);
	assert_string_equal(a.url, CTL_DEFAULT_URL);
	assert_null(a.token);
	assert_null(a.cacert);
	assert_int_equal(a.timeout_s, CTL_DEFAULT_TIMEOUT_S);
	assert_false(a.json);

	assert_int_equal(parse_env("stats", &env, &a), 0);
	assert_string_equal(a.url, "https://admin.example:9443");
	assert_string_equal(a.token, "env-token");
	assert_string_equal(a.cacert, "/etc/ca.pem");

	/* Flags win, before or after the command, spaced or with "=". */
	assert_int_equal(parse_env("--url http://127.0.0.1:1 stats --token=flag-token --cacert x.pem", &env, &a), 0);
	assert_string_equal(a.url, "http://127.0.0.1:1");
	assert_string_equal(a.token, "flag-token");
	assert_string_equal(a.cacert, "x.pem");

	/* An empty variable is as good as none. */
	const struct ctl_env empty = { "", "", "" };
	assert_int_equal(parse_env("stats", &empty, &a), 0);
	assert_string_equal(a.url, CTL_DEFAULT_URL);
	assert_null(a.token);
	assert_null(a.cacert);
}

static void test_global_flags(void **state)
{
	struct ctl_args a;

	(void)state;
	expect_command("--json --insecure --timeout 5 regions", "regions", &a);
	assert_true(a.json);
	assert_true(a.insecure);
	assert_int_equal(a.timeout_s, 5);
	expect_command("regions --json", "regions", &a);
	assert_true(a.json);
	expect_error("--timeout 0 stats", "--timeout");
	expect_error("--timeout 5s stats", "--timeout");
	expect_error("stats --timeout", "needs a value");
	expect_error("--json=1 stats", "takes no value");
	expect_error("--url ftp://x stats", "--url");
	expect_error("--url 127.0.0.1:8081 stats", "--url");
}

static void test_every_command(void **state)
{
	struct ctl_args a;

	(void)state;
	expect_command("regions", "regions", &a);
	assert_int_equal(a.command->verb, CTL_REGIONS);
	expect_command("product get pk1", "product get", &a);
	assert_string_equal(a.pos[0], "pk1");
	expect_command("device get pk1 dev1", "device get", &a);
	assert_int_equal(a.npos, 2);
	assert_string_equal(a.pos[1], "dev1");
	expect_command("resolve pk1 dev1 --ip 192.0.2.1", "resolve", &a);
	assert_string_equal(a.ip, "192.0.2.1");
	expect_command("batch template", "batch template", &a);
	expect_command("batch status 17 --watch", "batch status", &a);
	assert_true(a.watch);
	expect_command("batch results 17", "batch results", &a);
	expect_command("batch list --limit 5 --cursor 9", "batch list", &a);
	assert_int_equal(a.limit, 5);
	assert_string_equal(a.cursor, "9");
	expect_command("batch retry 3 --wait", "batch retry", &a);
	assert_true(a.wait);
	expect_command("auth-code acct-b", "auth-code", &a);
	assert_string_equal(a.pos[0], "acct-b");
	expect_command("stats", "stats", &a);
	assert_int_equal(a.command->verb, CTL_STATS);
}

static void test_product_put(void **state)
{
	struct ctl_args a;

	(void)state;
	expect_command("product put pk1 --home-region eu-central-1 --home-instance iot-eu-1 --account acct-a --locked",
		"product put", &a);
	assert_string_equal(a.home_region, "eu-central-1");
	assert_string_equal(a.home_instance, "iot-eu-1");
	assert_string_equal(a.account, "acct-a");
	assert_true(a.locked);
	assert_false(a.pre_auth);
	expect_error("product put pk1", "--home-region is required");
	expect_error("product put --home-region x", "missing PK");
	expect_error("product put pk1 pk2 --home-region x", "unexpected argument \"pk2\"");
	/* Another command's option is unknown here. */
	expect_error("product put pk1 --home-region x --count 3", "unknown option --count for product put");
}

static void test_devices_register(void **state)
{
	struct ctl_args a;

	(void)state;
	expect_command("devices register pk1 names.csv", "devices register", &a);
	assert_string_equal(a.pos[1], "names.csv");
	expect_command("devices register pk1 -", "devices register", &a);
	assert_string_equal(a.pos[1], "-");
	expect_command("devices register pk1 --count 5", "devices register", &a);
	assert_int_equal(a.count, 5);
	assert_int_equal(a.npos, 1);
	expect_error("devices register pk1", "either FILE or --count");
	expect_error("devices register pk1 f.csv --count 2", "either FILE or --count");
	expect_error("devices register pk1 --count -3", "--count");
	expect_error("devices register pk1 --count 3x", "--count");
	/* After "--" a word starting with '-' is an argument. */
	expect_command("devices register pk1 -- -names.csv", "devices register", &a);
	assert_string_equal(a.pos[1], "-names.csv");
}

static void test_batch_create(void **state)
{
	struct ctl_args a;

	(void)state;
	expect_command("batch create rows.csv --strategy region --target-region eu-central-1 --wait", "batch create", &a);
	assert_string_equal(a.target_region, "eu-central-1");
	assert_true(a.wait);
	expect_command("batch create rows.csv --target-region eu-central-1", "batch create", &a);
	assert_null(a.strategy);
	expect_command("batch create rows.csv --strategy nearest --regions a,b:i", "batch create", &a);
	expect_command("batch create rows.csv --target-region r --target-account acct-b --auth-code 123456",
		"batch create", &a);
	expect_error("batch create rows.csv", "needs --target-region");
	expect_error("batch create rows.csv --strategy nearest", "needs --regions");
	expect_error("batch create rows.csv --strategy closest --target-region r", "region or nearest");
	expect_error("batch create rows.csv --target-region r --regions a,b", "--regions is for");
	expect_error("batch create rows.csv --strategy nearest --regions a --target-region r", "are for --strategy region");
	expect_error("batch create rows.csv --target-region r --auth-code 1", "--auth-code goes with --target-account");
	expect_error("batch create --target-region r", "missing FILE");
}

static void test_batch_ids(void **state)
{
	(void)state;
	expect_error("batch status abc", "a batch id is a number");
	expect_error("batch results 1/2", "a batch id is a number");
	expect_error("batch retry 123456789012345678901", "a batch id is a number");
}

static void test_bad_usage(void **state)
{
	(void)state;
	expect_error("", "a command is needed");
	expect_error("bogus", "unknown command \"bogus\"");
	expect_error("batch bogus 1", "unknown command \"batch bogus\"");
	expect_error("batch", "batch: which command?");
	expect_error("--frobnicate stats", "unknown option --frobnicate");
	expect_error("stats --frobnicate", "unknown option --frobnicate for stats");
	expect_error("stats extra", "unexpected argument \"extra\"");
	expect_error("device get pk1", "missing DN");
	expect_error("resolve pk1 dev1", "--ip is required");
	expect_error("help bogus", "unknown command \"bogus\"");
}

static void test_help_and_version(void **state)
{
	struct ctl_args a;

	(void)state;
	assert_int_equal(parse("--help", &a), 0);
	assert_true(a.help);
	assert_null(a.command);
	assert_null(a.topic);
	assert_int_equal(parse("help", &a), 0);
	assert_true(a.help);
	assert_null(a.command);
	assert_int_equal(parse("-h", &a), 0);
	assert_true(a.help);
	/* The same command's help, three ways; its required options need not be there. */
	const char *lines[] = { "help batch create", "batch create --help", "--help batch create" };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(parse(lines[i], &a), 0);
		assert_true(a.help);
		assert_non_null(a.command);
		assert_string_equal(a.command->name, "batch create");
	}
	assert_int_equal(parse("help batch", &a), 0);
	assert_null(a.command);
	assert_string_equal(a.topic, "batch");
	assert_int_equal(parse("batch --help", &a), 0);
	assert_string_equal(a.topic, "batch");
	assert_int_equal(parse("--version", &a), 0);
	assert_true(a.version);
}

/* What FN printed, NUL-terminated, for the caller to free. */
static char *printed(void (*fn)(FILE *, const struct ctl_args *), const struct ctl_args *a)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, a);
	fclose(f);
	return buf;
}

static void test_help_text(void **state)
{
	struct ctl_args a;
	char *s;

	(void)state;
	assert_int_equal(parse("--help", &a), 0);
	s = printed(ctl_help, &a);
	for (size_t i = 0; i < ctl_ncommands; i++) {
		if (strstr(s, ctl_commands[i].name) == NULL)
			fail_msg("the general help does not list %s", ctl_commands[i].name);
	}
	assert_non_null(strstr(s, "BOOTSTRAPCTL_URL"));
	assert_non_null(strstr(s, "BOOTSTRAPCTL_TOKEN"));
	assert_non_null(strstr(s, "--insecure"));
	free(s);

	assert_int_equal(parse("help batch create", &a), 0);
	s = printed(ctl_help, &a);
	assert_non_null(strstr(s, "usage: bootstrapctl batch create FILE"));
	assert_non_null(strstr(s, "--target-region"));
	assert_non_null(strstr(s, "--wait"));
	assert_null(strstr(s, "--home-region"));
	free(s);

	assert_int_equal(parse("help batch", &a), 0);
	s = printed(ctl_help, &a);
	assert_non_null(strstr(s, "batch retry"));
	assert_null(strstr(s, "product put"));
	free(s);

	/* After an error: the command's usage line. */
	assert_int_not_equal(parse("product put pk1", &a), 0);
	s = printed(ctl_usage, &a);
	assert_non_null(strstr(s, "usage: bootstrapctl product put PK --home-region REGION"));
	free(s);
}

static void build(const char *line, struct ctl_request *r)
{
	struct ctl_args a;

	if (parse(line, &a) < 0)
		fail_msg("\"%s\": %s", line, err);
	assert_int_equal(ctl_request_build(&a, r), 0);
}

static void expect_request(const char *line, const char *method, const char *path)
{
	struct ctl_request r;

	build(line, &r);
	assert_string_equal(r.method, method);
	assert_string_equal(r.path, path);
	ctl_request_deinit(&r);
}

static void test_requests(void **state)
{
	(void)state;
	expect_request("regions", "GET", "/v1/regions");
	expect_request("stats", "GET", "/v1/stats");
	expect_request("product get pk1", "GET", "/v1/products/pk1");
	expect_request("device get pk1 dev@1:a", "GET", "/v1/devices/pk1/dev@1:a");
	expect_request("resolve pk1 dev1 --ip 2001:db8::1", "GET", "/v1/devices/pk1/dev1/resolve?ip=2001:db8::1");
	expect_request("batch template", "GET", "/v1/batches/template.csv");
	expect_request("batch status 17", "GET", "/v1/batches/17");
	expect_request("batch results 17", "GET", "/v1/batches/17/results");
	expect_request("batch list", "GET", "/v1/batches");
	expect_request("batch list --limit 3 --cursor a+b", "GET", "/v1/batches?limit=3&cursor=a%2Bb");
	expect_request("batch retry 17", "POST", "/v1/batches/17/retry");
	expect_request("auth-code acct-b", "POST", "/v1/accounts/acct-b/auth-codes");
	/* A slash in an argument cannot reach another path. */
	expect_request("product get a/../b", "GET", "/v1/products/a%2F..%2Fb");
}

/* A request with a body: LINE makes METHOD PATH with TYPE, and BODY (the
 * JSON made) or FILE (the file whose bytes go) as given, NULL for none. */
struct body_case {
	const char *line, *method, *path, *type, *body, *file;
};

static void test_request_bodies(void **state)
{
	static const struct body_case cases[] = {
		{ "product put pk1 --home-region eu-central-1 --account acct-a", "PUT", "/v1/products/pk1",
			"application/json",
			"{\"homeRegion\":\"eu-central-1\",\"account\":\"acct-a\",\"locked\":false,\"preAuth\":false}",
			NULL },
		{ "product put pk1 --home-region r --home-instance i --locked --bootstrap-auth required "
		  "--dynamic-registration open --pre-auth", "PUT", "/v1/products/pk1", "application/json",
			"{\"homeRegion\":\"r\",\"homeInstance\":\"i\",\"locked\":true,\"bootstrapAuth\":\"required\","
			"\"dynamicRegistration\":\"open\",\"preAuth\":true}", NULL },
		{ "product put pk1 --home-region \"q\\", "PUT", "/v1/products/pk1", "application/json",
			"{\"homeRegion\":\"\\\"q\\\\\",\"locked\":false,\"preAuth\":false}", NULL },
		{ "devices register pk1 --count 5", "POST", "/v1/products/pk1/devices", "application/json",
			"{\"count\":5}", NULL },
		{ "devices register pk1 names.csv", "POST", "/v1/products/pk1/devices", "text/csv", NULL, "names.csv" },
		{ "batch create rows.csv --target-region eu-central-1 --target-instance iot-eu-1", "POST",
			"/v1/batches?strategy=region&targetRegion=eu-central-1&targetInstance=iot-eu-1", "text/csv", NULL,
			"rows.csv" },
		{ "batch create - --strategy nearest --regions cn-shanghai,eu-central-1:iot-eu-1", "POST",
			"/v1/batches?strategy=nearest&regions=cn-shanghai%2Ceu-central-1:iot-eu-1", "text/csv", NULL, "-" },
		{ "batch create f --target-region r --target-account acct-b --auth-code 123456", "POST",
			"/v1/batches?strategy=region&targetRegion=r&targetAccount=acct-b&authCode=123456", "text/csv", NULL,
			"f" },
	};
	struct ctl_request r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct body_case *c = &cases[i];
		build(c->line, &r);
		assert_string_equal(r.method, c->method);
		assert_string_equal(r.path, c->path);
		assert_string_equal(r.content_type, c->type);
		if (c->body) {
			assert_string_equal(r.body, c->body);
			assert_int_equal(r.body_len, strlen(c->body));
		} else {
			assert_null(r.body);
		}
		if (c->file)
			assert_string_equal(r.file, c->file);
		else
			assert_null(r.file);
		ctl_request_deinit(&r);
	}

	assert_int_equal(ctl_request_batch("42", &r), 0);
	assert_string_equal(r.path, "/v1/batches/42");
	assert_string_equal(r.method, "GET");
	ctl_request_deinit(&r);
	ctl_request_deinit(NULL);
}

static void test_escape(void **state)
{
	char *s;

	(void)state;
	s = ctl_escape("aZ09-._~@: /?&=+%#\xc3\xa9");
	assert_string_equal(s, "aZ09-._~@:%20%2F%3F%26%3D%2B%25%23%C3%A9");
	free(s);
	s = ctl_escape("");
	assert_string_equal(s, "");
	free(s);
}

static void test_progress_bar(void **state)
{
	char bar[64];

	(void)state;
	ctl_progress_bar(0, 10, 10, bar, sizeof(bar));
	assert_string_equal(bar, "[..........]   0%");
	ctl_progress_bar(5, 10, 10, bar, sizeof(bar));
	assert_string_equal(bar, "[#####.....]  50%");
	ctl_progress_bar(2, 3, 10, bar, sizeof(bar));
	assert_string_equal(bar, "[######....]  66%");
	ctl_progress_bar(10, 10, 10, bar, sizeof(bar));
	assert_string_equal(bar, "[##########] 100%");
	/* Nothing to do, or more done than the total: full. */
	ctl_progress_bar(0, 0, 4, bar, sizeof(bar));
	assert_string_equal(bar, "[####] 100%");
	ctl_progress_bar(12, 10, 4, bar, sizeof(bar));
	assert_string_equal(bar, "[####] 100%");
	/* A short buffer is cut, still terminated. */
	ctl_progress_bar(5, 10, 10, bar, 6);
	assert_string_equal(bar, "[####");
}

static yajl_val tree(const char *json)
{
	char e[128];
	yajl_val v = yajl_tree_parse(json, e, sizeof(e));

	if (v == NULL)
		fail_msg("test JSON: %s", e);
	return v;
}

static void test_batch_lines(void **state)
{
	yajl_val v = tree("{\"batchId\":\"17\",\"status\":\"running\",\"total\":1000,\"processed\":450,"
			  "\"succeeded\":448,\"failed\":2,\"error\":null}");
	struct ctl_batch b;
	char line[256];

	(void)state;
	assert_int_equal(ctl_batch_read(v, &b), 0);
	assert_false(ctl_batch_done(&b));
	ctl_batch_line(&b, line, sizeof(line));
	assert_string_equal(line, "batch 17: running, 450/1000 processed, 448 succeeded, 2 failed");
	ctl_batch_bar_line(&b, line, sizeof(line));
	assert_string_equal(line, "batch 17 [#############.................]  45% 450/1000 running, 2 failed");
	yajl_tree_free(v);

	v = tree("{\"batchId\":\"3\",\"status\":\"failed\",\"total\":10,\"processed\":4,\"succeeded\":4,"
		 "\"failed\":0,\"error\":\"WRONGTYPE\"}");
	assert_int_equal(ctl_batch_read(v, &b), 0);
	assert_true(ctl_batch_done(&b));
	ctl_batch_line(&b, line, sizeof(line));
	assert_string_equal(line, "batch 3: failed, 4/10 processed, 4 succeeded, 0 failed; error: WRONGTYPE");
	yajl_tree_free(v);

	/* The create answer: no counts yet. */
	v = tree("{\"batchId\":\"4\",\"status\":\"initializing\",\"total\":2}");
	assert_int_equal(ctl_batch_read(v, &b), 0);
	ctl_batch_line(&b, line, sizeof(line));
	assert_string_equal(line, "batch 4: initializing, 0/2 processed, 0 succeeded, 0 failed");
	yajl_tree_free(v);

	v = tree("{\"error\":{\"code\":\"x\",\"message\":\"y\"}}");
	assert_int_equal(ctl_batch_read(v, &b), -1);
	yajl_tree_free(v);
}

static char *print_tree(void (*fn)(FILE *, yajl_val), const char *json)
{
	yajl_val v = tree(json);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, v);
	fclose(f);
	yajl_tree_free(v);
	return buf;
}

/* FN prints the tree of JSON as WANT. */
static void expect_print(void (*fn)(FILE *, yajl_val), const char *json, const char *want)
{
	char *s = print_tree(fn, json);

	assert_string_equal(s, want);
	free(s);
}

static void test_batch_print(void **state)
{
	(void)state;
	expect_print(ctl_batch_print,
		"{\"batchId\":\"1\",\"status\":\"completed\",\"total\":2,\"processed\":2,\"succeeded\":1,\"failed\":1,"
		"\"createdAt\":\"2026-12-01T20:08:43Z\",\"updatedAt\":\"2026-12-01T20:08:44Z\",\"strategy\":\"region\","
		"\"kind\":\"devices\",\"targetRegion\":\"eu-central-1\",\"targetInstance\":\"iot-eu-1\","
		"\"targetAccount\":null,\"error\":null,\"notify\":{\"pending\":0,\"sent\":0,\"acked\":0,\"none\":1}}",
		"batch 1: completed, 2/2 processed, 1 succeeded, 1 failed\n"
		"strategy: region (devices) -> eu-central-1/iot-eu-1\n"
		"created:  2026-12-01T20:08:43Z\n"
		"updated:  2026-12-01T20:08:44Z\n"
		"notify:   0 pending, 0 sent, 0 acked, 1 none\n");
	expect_print(ctl_batch_print,
		"{\"batchId\":\"2\",\"status\":\"running\",\"total\":1,\"processed\":0,\"succeeded\":0,\"failed\":0,"
		"\"strategy\":\"nearest\",\"kind\":\"devices\",\"candidates\":[{\"region\":\"a\",\"instance\":\"i\"},"
		"{\"region\":\"b\",\"instance\":\"j\"}],\"targetAccount\":\"acct-b\"}",
		"batch 2: running, 0/1 processed, 0 succeeded, 0 failed\n"
		"strategy: nearest (devices) -> a/i, b/j\n"
		"account:  acct-b\n"
		"created:  -\n"
		"updated:  -\n");
	expect_print(ctl_batch_print, "{\"error\":{}}", "(not a batch)\n");
}

static void test_stats_print(void **state)
{
	(void)state;
	expect_print(ctl_stats_print,
		"{\"devices\":{\"total\":4,\"active\":1,\"inactive\":3},\"distributed\":{\"byRegion\":"
		"{\"eu-central-1\":2,\"cn-shanghai\":1}},\"activations\":1,\"batches\":{\"initializing\":0,"
		"\"running\":1,\"completed\":2,\"failed\":0}}",
		"devices: 4 total, 1 active, 3 inactive\n"
		"activations: 1\n"
		"batches: 0 initializing, 1 running, 2 completed, 0 failed\n"
		"distributed by region:\n"
		"  eu-central-1             2\n"
		"  cn-shanghai              1\n");
	expect_print(ctl_stats_print,
		"{\"devices\":{\"total\":0,\"active\":0,\"inactive\":0},\"distributed\":{\"byRegion\":{}},"
		"\"activations\":0,\"batches\":{\"initializing\":0,\"running\":0,\"completed\":0,\"failed\":0}}",
		"devices: 0 total, 0 active, 0 inactive\n"
		"activations: 0\n"
		"batches: 0 initializing, 0 running, 0 completed, 0 failed\n"
		"distributed by region: none\n");
}

static void test_regions_print(void **state)
{
	(void)state;
	expect_print(ctl_regions_print,
		"{\"regions\":[{\"id\":\"cn-shanghai\",\"name\":\"China East 2\",\"instances\":[{\"id\":\"sh-1\","
		"\"default\":true}]},{\"id\":\"us-east-1\",\"name\":\"US East\",\"instances\":[{\"id\":\"us-1\","
		"\"default\":true},{\"id\":\"us-2\"}]}]}",
		"ID           NAME          INSTANCES (* default)\n"
		"cn-shanghai  China East 2  sh-1*\n"
		"us-east-1    US East       us-1*, us-2\n");
	expect_print(ctl_regions_print, "{}", "(no regions)\n");
}

static void test_json_pretty(void **state)
{
	const char *in = "{\"a\":1.50,\"b\":[true,null,\"x\\\"y\\u00e9\"],\"d\":12345678901234567890}";
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	(void)state;
	assert_int_equal(ctl_json_pretty(f, in, strlen(in)), 0);
	fclose(f);
	/* Numbers keep their digits (1.50, and one past any integer type). */
	assert_string_equal(buf, "{\n"
				 "  \"a\": 1.50,\n"
				 "  \"b\": [\n"
				 "    true,\n"
				 "    null,\n"
				 "    \"x\\\"y\xc3\xa9\"\n"
				 "  ],\n"
				 "  \"d\": 12345678901234567890\n"
				 "}\n");
	free(buf);

	buf = NULL;
	f = open_memstream(&buf, &len);
	assert_int_equal(ctl_json_pretty(f, "{\"a\":", 5), -1);
	assert_int_equal(ctl_json_pretty(f, "", 0), -1);
	fclose(f);
	assert_int_equal(len, 0);
	free(buf);
}

static void test_api_error(void **state)
{
	const char *body = "{\"error\":{\"code\":\"product_not_found\",\"message\":\"no such product\",\"details\":[]}}";
	const char *detailed = "{\"error\":{\"code\":\"invalid_csv\",\"message\":\"row 3\",\"details\":[\"column 2\"]}}";
	char out[256];

	(void)state;
	assert_int_equal(ctl_api_error(body, strlen(body), out, sizeof(out)), 0);
	assert_string_equal(out, "no such product (product_not_found)");
	assert_int_equal(ctl_api_error(detailed, strlen(detailed), out, sizeof(out)), 0);
	assert_string_equal(out, "row 3 (invalid_csv); column 2");
	assert_int_equal(ctl_api_error("<html>", 6, out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(ctl_api_error("{\"code\":460,\"message\":\"x\"}", 26, out, sizeof(out)), -1);
	assert_int_equal(ctl_api_error("", 0, out, sizeof(out)), -1);
}

/* Every command has what its help and the parser rely on. */
static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < ctl_ncommands; i++) {
		const struct ctl_command *c = &ctl_commands[i];
		assert_non_null(c->build);
		assert_non_null(c->options);
		assert_true(c->min_pos <= c->max_pos && c->max_pos <= CTL_POS_MAX);
		assert_true(c->max_pos == 0 || c->pos_names != NULL);
		assert_true(c->verb > CTL_HELP && c->verb < CTL_NVERBS);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(ctl_commands[j].name, c->name);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_env),
		cmocka_unit_test(test_global_flags),
		cmocka_unit_test(test_every_command),
		cmocka_unit_test(test_product_put),
		cmocka_unit_test(test_devices_register),
		cmocka_unit_test(test_batch_create),
		cmocka_unit_test(test_batch_ids),
		cmocka_unit_test(test_bad_usage),
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_help_text),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_request_bodies),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_progress_bar),
		cmocka_unit_test(test_batch_lines),
		cmocka_unit_test(test_batch_print),
		cmocka_unit_test(test_stats_print),
		cmocka_unit_test(test_regions_print),
		cmocka_unit_test(test_json_pretty),
		cmocka_unit_test(test_api_error),
		cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
