#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <yajl/yajl_tree.h>

#include "log.h"

/* Runs FN with stderr sent to a file; returns what it wrote (caller frees). */
static char *captured(void (*fn)(void))
{
	FILE *f = tmpfile();
	int saved = dup(2);
	long n;
	char *out;

	assert_non_null(f);
	fflush(stderr);
	assert_true(dup2(fileno(f), 2) >= 0);
	fn();
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	n = ftell(f);
	assert_true(n >= 0);
	out = calloc(1, (size_t)n + 1);
	rewind(f);
	assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return out;
}

static void write_lines(void)
{
	log_context_set(NULL);
	log_info("store", "plain %d", 1);
	log_context_set("req-1.A_b");
	log_warn("admin", "with \"quotes\"\nand a newline");
	log_debug("admin", "below the level");
	log_context_set("");
}

static void test_text(void **state)
{
	char *out;

	(void)state;
	log_set_format(LOG_FORMAT_TEXT);
	log_set_level(LOG_INFO);
	out = captured(write_lines);
	/* Two lines: the control byte does not start a third. */
	assert_non_null(strstr(out, " info store: plain 1\n"));
	assert_non_null(strstr(out, " warn admin: with \"quotes\"?and a newline request_id=req-1.A_b\n"));
	assert_null(strstr(out, "below the level"));
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_null(strchr(strchr(strchr(out, '\n') + 1, '\n') + 1, '\n'));
	free(out);
}

static void test_json(void **state)
{
	char *out, *second, err[128];
	const char *msg[] = { "msg", NULL }, *rid[] = { "request_id", NULL }, *level[] = { "level", NULL },
		   *module[] = { "module", NULL }, *ts[] = { "ts", NULL };
	yajl_val v;

	(void)state;
	log_set_format(LOG_FORMAT_JSON);
	log_set_level(LOG_INFO);
	out = captured(write_lines);
	second = strchr(out, '\n');
	assert_non_null(second);
	*second++ = '\0';
	v = yajl_tree_parse(out, err, sizeof(err));
	assert_non_null(v);
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, msg, yajl_t_string)), "plain 1");
	assert_null(yajl_tree_get(v, rid, yajl_t_string));
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, module, yajl_t_string)), "store");
	const char *t = YAJL_GET_STRING(yajl_tree_get(v, ts, yajl_t_string));
	assert_non_null(t);
	assert_int_equal(strlen(t), 24);
	yajl_tree_free(v);
	second[strlen(second) - 1] = '\0';
	v = yajl_tree_parse(second, err, sizeof(err));
	assert_non_null(v);
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, msg, yajl_t_string)), "with \"quotes\"\nand a newline");
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, rid, yajl_t_string)), "req-1.A_b");
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, level, yajl_t_string)), "warn");
	yajl_tree_free(v);
	free(out);
	log_set_format(LOG_FORMAT_TEXT);
}

static void write_access(void)
{
	const struct log_access a = { "POST", "/v1/batches/{batchId}/retry", "::1", "abc", 409, 0.0012345 };

	log_context_set("other");
	log_access(&a);
	log_info("http", "after");
	log_context_set(NULL);
}

static void test_access(void **state)
{
	char *out, err[128];
	const char *status[] = { "status", NULL }, *route[] = { "route", NULL }, *dur[] = { "duration_ms", NULL },
		   *rid[] = { "request_id", NULL }, *client[] = { "client", NULL };
	yajl_val v;

	(void)state;
	/* Written whatever the level; the thread's own context comes back after. */
	log_set_level(LOG_ERROR);
	out = captured(write_access);
	assert_non_null(strstr(out, " info access: POST /v1/batches/{batchId}/retry 409 1.234ms ::1 request_id=abc\n"));
	assert_null(strstr(out, "after"));
	free(out);
	log_set_level(LOG_INFO);
	out = captured(write_access);
	assert_non_null(strstr(out, " info http: after request_id=other\n"));
	free(out);
	log_set_format(LOG_FORMAT_JSON);
	out = captured(write_access);
	*strchr(out, '\n') = '\0';
	v = yajl_tree_parse(out, err, sizeof(err));
	assert_non_null(v);
	assert_int_equal(YAJL_GET_INTEGER(yajl_tree_get(v, status, yajl_t_number)), 409);
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, route, yajl_t_string)), "/v1/batches/{batchId}/retry");
	assert_true(YAJL_GET_DOUBLE(yajl_tree_get(v, dur, yajl_t_number)) > 1.23);
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, rid, yajl_t_string)), "abc");
	assert_string_equal(YAJL_GET_STRING(yajl_tree_get(v, client, yajl_t_string)), "::1");
	yajl_tree_free(v);
	free(out);
	log_set_format(LOG_FORMAT_TEXT);
}

static void test_context_bounds(void **state)
{
	char id[100];

	(void)state;
	memset(id, 'x', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	log_context_set(id);
	assert_int_equal(strlen(log_context()), LOG_ID_MAX);
	log_context_set(NULL);
	assert_string_equal(log_context(), "");
}

static void test_parse(void **state)
{
	enum log_format f;
	enum log_level l;

	(void)state;
	assert_int_equal(log_parse_format("json", &f), 0);
	assert_int_equal(f, LOG_FORMAT_JSON);
	assert_int_equal(log_parse_format("JSON", &f), -1);
	assert_int_equal(log_parse_level("warn", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_parse_level("trace", &l), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_context_bounds),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
