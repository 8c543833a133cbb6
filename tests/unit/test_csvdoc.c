#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "csvdoc.h"

#define MAX_ROWS 10

/* Parses LEN bytes of S, which must succeed. */
static struct csvdoc *parse_ok(const char *s, size_t len, size_t max)
{
	struct csvdoc *doc = NULL;
	char *cause = NULL;
	int rc = csvdoc_parse(s, len, max, &doc, &cause);

	if (rc != 0)
		fail_msg("csvdoc_parse: %d %s", rc, cause ? cause : "(no cause)");
	assert_null(cause);
	assert_non_null(doc);
	return doc;
}

/* Parses LEN bytes of S, which must fail with ERR and a cause containing WANT. */
static void parse_err(const char *s, size_t len, size_t max, int err, const char *want)
{
	struct csvdoc *doc = (struct csvdoc *)0x1;
	char *cause = NULL;
	int rc = csvdoc_parse(s, len, max, &doc, &cause);

	if (rc != err)
		fail_msg("csvdoc_parse returned %d, expected %d (cause %s)", rc, err, cause ? cause : "-");
	assert_ptr_equal(doc, (struct csvdoc *)0x1);
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want);
	free(cause);
}

#define PARSE_OK(lit) parse_ok(lit, sizeof(lit) - 1, MAX_ROWS)
#define PARSE_ERR(lit, err, want) parse_err(lit, sizeof(lit) - 1, MAX_ROWS, err, want)
#define PARSE_OK_MAX(lit, max) parse_ok(lit, sizeof(lit) - 1, max)
#define PARSE_ERR_MAX(lit, max, err, want) parse_err(lit, sizeof(lit) - 1, max, err, want)

static void assert_row(const struct csvdoc *doc, size_t i, size_t nfields, ...)
{
	va_list ap;

	assert_true(i < doc->nrows);
	assert_int_equal(doc->rows[i].number, i + 1);
	assert_int_equal(doc->rows[i].nfields, nfields);
	va_start(ap, nfields);
	for (size_t k = 0; k < nfields; k++) {
		const char *want = va_arg(ap, const char *);
		assert_non_null(doc->rows[i].fields[k]);
		assert_string_equal(doc->rows[i].fields[k], want);
	}
	va_end(ap);
}

static void test_header_and_rows(void **state)
{
	struct csvdoc *doc = PARSE_OK("productKey,deviceName\npk1,dev1\npk2,dev2\n");

	(void)state;
	assert_int_equal(doc->nrows, 3);
	assert_row(doc, 0, 2, "productKey", "deviceName");
	assert_row(doc, 1, 2, "pk1", "dev1");
	assert_row(doc, 2, 2, "pk2", "dev2");
	csvdoc_free(doc);
}

static void test_no_final_newline(void **state)
{
	struct csvdoc *doc = PARSE_OK("h1,h2\na,b");

	(void)state;
	assert_int_equal(doc->nrows, 2);
	assert_row(doc, 1, 2, "a", "b");
	csvdoc_free(doc);
}

static void test_crlf(void **state)
{
	struct csvdoc *doc = PARSE_OK("h1,h2\r\na,b\r\nc,d\r\n");

	(void)state;
	assert_int_equal(doc->nrows, 3);
	assert_row(doc, 0, 2, "h1", "h2");
	assert_row(doc, 1, 2, "a", "b");
	assert_row(doc, 2, 2, "c", "d");
	csvdoc_free(doc);
}

static void test_mixed_line_endings(void **state)
{
	struct csvdoc *doc = PARSE_OK("h\r\na\nb\r\n");

	(void)state;
	assert_int_equal(doc->nrows, 3);
	assert_row(doc, 1, 1, "a");
	assert_row(doc, 2, 1, "b");
	csvdoc_free(doc);
}

static void test_bom_skipped(void **state)
{
	struct csvdoc *doc = PARSE_OK("\xef\xbb\xbfproductKey,deviceName\npk,dn\n");

	(void)state;
	assert_int_equal(doc->nrows, 2);
	assert_row(doc, 0, 2, "productKey", "deviceName");
	csvdoc_free(doc);
}

static void test_bom_only_once(void **state)
{
	(void)state;
	/* A second BOM is a U+FEFF in the text, kept as such. */
	struct csvdoc *doc = PARSE_OK("\xef\xbb\xbf\xef\xbb\xbfh\n");

	assert_int_equal(doc->nrows, 1);
	assert_row(doc, 0, 1, "\xef\xbb\xbfh");
	csvdoc_free(doc);
}

static void test_quoted_comma(void **state)
{
	struct csvdoc *doc = PARSE_OK("h1,h2\n\"a,b\",c\n");

	(void)state;
	assert_row(doc, 1, 2, "a,b", "c");
	csvdoc_free(doc);
}

static void test_quoted_quote(void **state)
{
	struct csvdoc *doc = PARSE_OK("h1,h2\n\"a\"\"b\",\"\"\"\"\n");

	(void)state;
	assert_row(doc, 1, 2, "a\"b", "\"");
	csvdoc_free(doc);
}

static void test_quoted_newline_rejected(void **state)
{
	(void)state;
	/* RFC 4180 allows it, but csvdoc.h forbids control characters in the text. */
	PARSE_ERR("h1,h2\n\"a\nb\",c\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h1,h2\n\"a\r\nb\",c\n", CSVDOC_EPARSE, "row 2");
}

static void test_stray_quote(void **state)
{
	(void)state;
	PARSE_ERR("h\na\"b\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h\n\"a\"b\n", CSVDOC_EPARSE, "row 2");
}

static void test_blank_lines_skipped(void **state)
{
	struct csvdoc *doc = PARSE_OK("\nh\n\n\na\r\n\r\nb\n\n");

	(void)state;
	assert_int_equal(doc->nrows, 3);
	assert_row(doc, 0, 1, "h");
	assert_row(doc, 1, 1, "a");
	assert_row(doc, 2, 1, "b");
	csvdoc_free(doc);
}

static void test_blank_trailing_line(void **state)
{
	struct csvdoc *doc = PARSE_OK("h1,h2\na,b\n\n");

	(void)state;
	assert_int_equal(doc->nrows, 2);
	assert_row(doc, 1, 2, "a", "b");
	csvdoc_free(doc);
}

static void test_empty_fields(void **state)
{
	struct csvdoc *doc = PARSE_OK("a,,b\n,\n\"\",x\n");

	(void)state;
	assert_int_equal(doc->nrows, 3);
	assert_row(doc, 0, 3, "a", "", "b");
	assert_row(doc, 1, 2, "", "");
	assert_row(doc, 2, 2, "", "x");
	csvdoc_free(doc);
}

static void test_max_rows_exact(void **state)
{
	struct csvdoc *doc = PARSE_OK_MAX("h\n1\n2\n3\n", 3);

	(void)state;
	assert_int_equal(doc->nrows, 4);
	assert_row(doc, 3, 1, "3");
	csvdoc_free(doc);
}

static void test_max_rows_exceeded(void **state)
{
	(void)state;
	PARSE_ERR_MAX("h\n1\n2\n3\n4\n", 3, CSVDOC_ETOO_MANY, "row 5");
}

static void test_max_rows_zero(void **state)
{
	struct csvdoc *doc = PARSE_OK_MAX("h\n", 0);

	(void)state;
	assert_int_equal(doc->nrows, 1);
	csvdoc_free(doc);
	PARSE_ERR_MAX("h\n1\n", 0, CSVDOC_ETOO_MANY, "row 2");
}

static void test_max_rows_blank_lines_not_counted(void **state)
{
	struct csvdoc *doc = PARSE_OK_MAX("h\n\n1\n\n2\n\n", 2);

	(void)state;
	assert_int_equal(doc->nrows, 3);
	csvdoc_free(doc);
}

static void test_many_rows_and_fields(void **state)
{
	char buf[8192];
	size_t off = 0;
	struct csvdoc *doc;

	(void)state;
	for (int r = 0; r < 101; r++) {
		for (int f = 0; f < 9; f++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%sr%df%d", f ? "," : "", r, f);
		buf[off++] = '\n';
	}
	assert_true(off < sizeof(buf));
	doc = parse_ok(buf, off, 100);
	assert_int_equal(doc->nrows, 101);
	assert_int_equal(doc->rows[100].number, 101);
	assert_int_equal(doc->rows[100].nfields, 9);
	assert_string_equal(doc->rows[100].fields[8], "r100f8");
	assert_string_equal(doc->rows[37].fields[4], "r37f4");
	csvdoc_free(doc);
}

static void test_unterminated_quote(void **state)
{
	(void)state;
	PARSE_ERR("h1,h2\na,\"b\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h1,h2\na,b\n\n\"c", CSVDOC_EPARSE, "row 3");
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	PARSE_ERR("h\n\xff\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h\nab\xc3\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("\xc0\xaf\n", CSVDOC_EPARSE, "row 1");
}

static void test_control_chars(void **state)
{
	(void)state;
	PARSE_ERR("h\na\x01" "b\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h\n\"\x01\"\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h\nx,a\x7f\n", CSVDOC_EPARSE, "row 2");
	PARSE_ERR("h\na\tb\n", CSVDOC_EPARSE, "row 2");
}

static void test_nul_byte(void **state)
{
	(void)state;
	PARSE_ERR("h\na\0b\n", CSVDOC_EPARSE, "row 2");
}

static void test_field_length(void **state)
{
	char buf[CSVDOC_FIELD_MAX + 16];
	struct csvdoc *doc;

	(void)state;
	memcpy(buf, "h\n", 2);
	memset(buf + 2, 'x', CSVDOC_FIELD_MAX);
	buf[2 + CSVDOC_FIELD_MAX] = '\n';
	doc = parse_ok(buf, CSVDOC_FIELD_MAX + 3, MAX_ROWS);
	assert_int_equal(strlen(doc->rows[1].fields[0]), CSVDOC_FIELD_MAX);
	csvdoc_free(doc);

	buf[2 + CSVDOC_FIELD_MAX] = 'x';
	buf[3 + CSVDOC_FIELD_MAX] = '\n';
	parse_err(buf, CSVDOC_FIELD_MAX + 4, MAX_ROWS, CSVDOC_EPARSE, "row 2");
}

static void test_empty_document(void **state)
{
	struct csvdoc *doc;

	(void)state;
	doc = parse_ok("", 0, MAX_ROWS);
	assert_int_equal(doc->nrows, 0);
	csvdoc_free(doc);
	doc = PARSE_OK("\n\r\n\n");
	assert_int_equal(doc->nrows, 0);
	csvdoc_free(doc);
	doc = PARSE_OK("\xef\xbb\xbf");
	assert_int_equal(doc->nrows, 0);
	csvdoc_free(doc);
}

static void test_row_numbers(void **state)
{
	struct csvdoc *doc = PARSE_OK("h\na\nb\nc\n");

	(void)state;
	assert_int_equal(doc->nrows, 4);
	for (size_t i = 0; i < doc->nrows; i++)
		assert_int_equal(doc->rows[i].number, i + 1);
	csvdoc_free(doc);
}

static void test_free_null(void **state)
{
	(void)state;
	csvdoc_free(NULL);
}

#define VALID(lit) csvdoc_valid_text(lit, sizeof(lit) - 1)

static void test_valid_ascii(void **state)
{
	(void)state;
	assert_int_equal(VALID("productKey ~!@#$%^&*()_+{}|:<>?"), 1);
	assert_int_equal(csvdoc_valid_text(NULL, 0), 1);
	assert_int_equal(VALID(""), 1);
}

static void test_valid_multibyte(void **state)
{
	(void)state;
	assert_int_equal(VALID("\xc3\xa9"), 1);         /* U+00E9, 2 bytes */
	assert_int_equal(VALID("\xc2\x80"), 1);         /* U+0080, smallest 2-byte */
	assert_int_equal(VALID("\xe2\x82\xac"), 1);     /* U+20AC, 3 bytes */
	assert_int_equal(VALID("\xe0\xa0\x80"), 1);     /* U+0800, smallest 3-byte */
	assert_int_equal(VALID("\xef\xbb\xbf"), 1);     /* U+FEFF */
	assert_int_equal(VALID("\xf0\x9f\x98\x80"), 1); /* U+1F600, 4 bytes */
	assert_int_equal(VALID("\xf4\x8f\xbf\xbf"), 1); /* U+10FFFF */
	assert_int_equal(VALID("a\xc3\xa9" "b\xe2\x82\xac" "c\xf0\x9f\x98\x80"), 1);
}

static void test_invalid_overlong(void **state)
{
	(void)state;
	assert_int_equal(VALID("\xc0\xaf"), 0);
	assert_int_equal(VALID("\xc1\xbf"), 0);
	assert_int_equal(VALID("\xe0\x80\xaf"), 0);
	assert_int_equal(VALID("\xe0\x9f\xbf"), 0);
	assert_int_equal(VALID("\xf0\x80\x80\xaf"), 0);
	assert_int_equal(VALID("\xf0\x8f\xbf\xbf"), 0);
}

static void test_invalid_surrogate(void **state)
{
	(void)state;
	assert_int_equal(VALID("\xed\xa0\x80"), 0); /* U+D800 */
	assert_int_equal(VALID("\xed\xbf\xbf"), 0); /* U+DFFF */
	assert_int_equal(VALID("\xed\x9f\xbf"), 1); /* U+D7FF */
}

static void test_invalid_beyond_max(void **state)
{
	(void)state;
	assert_int_equal(VALID("\xf4\x90\x80\x80"), 0); /* U+110000 */
	assert_int_equal(VALID("\xf8\x88\x80\x80\x80"), 0);
	assert_int_equal(VALID("\xff"), 0);
	assert_int_equal(VALID("\xfe"), 0);
}

static void test_invalid_truncated(void **state)
{
	(void)state;
	assert_int_equal(VALID("\xc3"), 0);
	assert_int_equal(VALID("\xe2\x82"), 0);
	assert_int_equal(VALID("\xf0\x9f\x98"), 0);
	assert_int_equal(VALID("\xe2\x82" "a"), 0);
	assert_int_equal(VALID("\xc3" "a"), 0);
	assert_int_equal(VALID("\x80"), 0);
	assert_int_equal(VALID("a\xbf" "b"), 0);
	/* LEN is honoured: a valid sequence cut by LEN is truncated. */
	assert_int_equal(csvdoc_valid_text("\xc3\xa9", 1), 0);
	assert_int_equal(csvdoc_valid_text("\xf0\x9f\x98\x80", 3), 0);
}

static void test_invalid_control(void **state)
{
	(void)state;
	assert_int_equal(VALID("a\x01"), 0);
	assert_int_equal(VALID("\x1f"), 0);
	assert_int_equal(VALID("\t"), 0);
	assert_int_equal(VALID("\n"), 0);
	assert_int_equal(VALID("\x7f"), 0);
	assert_int_equal(VALID("a\0b"), 0);
	assert_int_equal(VALID(" "), 1);
}

static void test_write_plain(void **state)
{
	char out[32];
	size_t off = 0;

	(void)state;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "abc"), 0);
	assert_int_equal(off, 3);
	assert_string_equal(out, "abc");
}

static void test_write_comma(void **state)
{
	char out[32];
	size_t off = 0;

	(void)state;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "a,b"), 0);
	assert_int_equal(off, 5);
	assert_string_equal(out, "\"a,b\"");
}

static void test_write_quote(void **state)
{
	char out[32];
	size_t off = 0;

	(void)state;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "a\"b"), 0);
	assert_int_equal(off, 6);
	assert_string_equal(out, "\"a\"\"b\"");
}

static void test_write_newline(void **state)
{
	char out[32];
	size_t off = 0;

	(void)state;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "a\nb"), 0);
	assert_string_equal(out, "\"a\nb\"");
	off = 0;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "a\rb"), 0);
	assert_string_equal(out, "\"a\rb\"");
}

static void test_write_appends(void **state)
{
	char out[32];
	size_t off = 0;

	(void)state;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "pk"), 0);
	out[off++] = ',';
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "x,y"), 0);
	out[off++] = ',';
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, ""), 0);
	assert_int_equal(off, 9);
	assert_string_equal(out, "pk,\"x,y\",");
}

static void test_write_round_trip(void **state)
{
	static const char *const fields[] = { "plain", "a,b", "a\"b", "\"", "", "\xc3\xa9" };
	char out[128];
	size_t off = 0;
	struct csvdoc *doc;

	(void)state;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (i)
			out[off++] = ',';
		assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, fields[i]), 0);
	}
	out[off++] = '\n';
	doc = parse_ok(out, off, 0);
	assert_int_equal(doc->nrows, 1);
	assert_int_equal(doc->rows[0].nfields, 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(doc->rows[0].fields[i], fields[i]);
	csvdoc_free(doc);
}

static void test_write_too_small(void **state)
{
	char out[32];
	size_t off;

	(void)state;
	/* "abc" needs 4 bytes with its NUL. */
	off = 0;
	assert_int_equal(csvdoc_write_field(out, 3, &off, "abc"), -1);
	assert_int_equal(off, 0);
	assert_int_equal(csvdoc_write_field(out, 4, &off, "abc"), 0);
	assert_int_equal(off, 3);

	/* "\"a,b\"" needs 6. */
	off = 0;
	assert_int_equal(csvdoc_write_field(out, 5, &off, "a,b"), -1);
	assert_int_equal(off, 0);
	assert_int_equal(csvdoc_write_field(out, 6, &off, "a,b"), 0);
	assert_int_equal(off, 5);

	/* At an offset, with no room left. */
	off = 5;
	assert_int_equal(csvdoc_write_field(out, 6, &off, "x"), -1);
	assert_int_equal(csvdoc_write_field(out, 6, &off, "a\"b"), -1);
	assert_int_equal(off, 5);
}

static void test_write_text_neutralises_formulas(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "=cmd|' /C calc'!A0", "\"'=cmd|' /C calc'!A0\"" },
		{ "+1", "\"'+1\"" },
		{ "-2+3", "\"'-2+3\"" },
		{ "@SUM(A1)", "\"'@SUM(A1)\"" },
		{ "\tx", "\"'\tx\"" },
		{ "\rx", "\"'\rx\"" },
		{ "=a\"b", "\"'=a\"\"b\"" },
		{ "plain", "plain" },      /* untouched */
		{ "a=b", "a=b" },          /* only the first character counts */
		{ "with,comma", "\"with,comma\"" },
		{ "", "" },
	};
	char out[128];
	size_t off;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		off = 0;
		out[0] = '\0';
		assert_int_equal(csvdoc_write_text(out, sizeof(out), &off, cases[i].in), 0);
		assert_string_equal(out, cases[i].out);
		assert_int_equal(off, strlen(cases[i].out));
	}
	off = 0;
	assert_int_equal(csvdoc_write_text(out, 5, &off, "=1234"), -1);
	/* A valid device name starting with '-' goes through write_field as it is. */
	off = 0;
	assert_int_equal(csvdoc_write_field(out, sizeof(out), &off, "-dev1"), 0);
	assert_string_equal(out, "-dev1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_and_rows),
		cmocka_unit_test(test_no_final_newline),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_mixed_line_endings),
		cmocka_unit_test(test_bom_skipped),
		cmocka_unit_test(test_bom_only_once),
		cmocka_unit_test(test_quoted_comma),
		cmocka_unit_test(test_quoted_quote),
		cmocka_unit_test(test_quoted_newline_rejected),
		cmocka_unit_test(test_stray_quote),
		cmocka_unit_test(test_blank_lines_skipped),
		cmocka_unit_test(test_blank_trailing_line),
		cmocka_unit_test(test_empty_fields),
		cmocka_unit_test(test_max_rows_exact),
		cmocka_unit_test(test_max_rows_exceeded),
		cmocka_unit_test(test_max_rows_zero),
		cmocka_unit_test(test_max_rows_blank_lines_not_counted),
		cmocka_unit_test(test_many_rows_and_fields),
		cmocka_unit_test(test_unterminated_quote),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_control_chars),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_field_length),
		cmocka_unit_test(test_empty_document),
		cmocka_unit_test(test_row_numbers),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test(test_valid_ascii),
		cmocka_unit_test(test_valid_multibyte),
		cmocka_unit_test(test_invalid_overlong),
		cmocka_unit_test(test_invalid_surrogate),
		cmocka_unit_test(test_invalid_beyond_max),
		cmocka_unit_test(test_invalid_truncated),
		cmocka_unit_test(test_invalid_control),
		cmocka_unit_test(test_write_plain),
		cmocka_unit_test(test_write_comma),
		cmocka_unit_test(test_write_quote),
		cmocka_unit_test(test_write_newline),
		cmocka_unit_test(test_write_appends),
		cmocka_unit_test(test_write_round_trip),
		cmocka_unit_test(test_write_too_small),
		cmocka_unit_test(test_write_text_neutralises_formulas),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
