#include "csvdoc.h"

#include <csv.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct csvdoc_state {
	struct csvdoc *doc;
	size_t cap;
	size_t max_rows; /* header included */
	struct csvdoc_row cur;
	size_t curcap;
	int err;
	char *cause;
};

int csvdoc_valid_text(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		unsigned int cp;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* Overlong forms, surrogates and beyond U+10FFFF. */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		i += n + 1;
	}
	return 1;
}

/* Names the row, and the column (by its header name once the header is
 * read) when the problem is in a field. */
static void csvdoc_fail_at(struct csvdoc_state *st, int err, bool in_field, const char *msg)
{
	const struct csvdoc_row *header = st->doc->nrows ? &st->doc->rows[0] : NULL;
	size_t col = st->cur.nfields;
	int n;

	if (st->err)
		return;
	st->err = err;
	if (!in_field)
		n = asprintf(&st->cause, "row %zu: %s", st->doc->nrows + 1, msg);
	else if (header && col < header->nfields && header->fields[col])
		n = asprintf(&st->cause, "row %zu, column %s: %s", st->doc->nrows + 1, header->fields[col], msg);
	else
		n = asprintf(&st->cause, "row %zu, column %zu: %s", st->doc->nrows + 1, col + 1, msg);
	if (n < 0)
		st->cause = NULL;
}

static void csvdoc_fail(struct csvdoc_state *st, int err, const char *msg)
{
	csvdoc_fail_at(st, err, false, msg);
}

static void csvdoc_field(void *data, size_t len, void *arg)
{
	struct csvdoc_state *st = arg;
	char *f;

	if (st->err)
		return;
	if (len > CSVDOC_FIELD_MAX) {
		csvdoc_fail_at(st, CSVDOC_EPARSE, true, "field too long");
		return;
	}
	if (!csvdoc_valid_text(data, len)) {
		csvdoc_fail_at(st, CSVDOC_EPARSE, true, "not UTF-8 text, or holds a control character");
		return;
	}
	if (st->cur.nfields == st->curcap) {
		size_t cap = st->curcap ? st->curcap * 2 : 4;
		char **grown = realloc(st->cur.fields, cap * sizeof(*grown));
		if (grown == NULL) {
			csvdoc_fail(st, CSVDOC_ENOMEM, "out of memory");
			return;
		}
		st->cur.fields = grown;
		st->curcap = cap;
	}
	f = malloc(len + 1);
	if (f == NULL) {
		csvdoc_fail(st, CSVDOC_ENOMEM, "out of memory");
		return;
	}
	if (len > 0) /* CSV_EMPTY_IS_NULL passes NULL for an empty unquoted field */
		memcpy(f, data, len);
	f[len] = '\0';
	st->cur.fields[st->cur.nfields++] = f;
}

static void csvdoc_row_clear(struct csvdoc_row *row)
{
	for (size_t i = 0; i < row->nfields; i++)
		free(row->fields[i]);
	free(row->fields);
	memset(row, 0, sizeof(*row));
}

static void csvdoc_row_end(int c, void *arg)
{
	struct csvdoc_state *st = arg;
	struct csvdoc *doc = st->doc;

	(void)c;
	if (st->err)
		return;
	if (doc->nrows == st->max_rows) {
		csvdoc_fail(st, CSVDOC_ETOO_MANY, "too many rows");
		return;
	}
	if (doc->nrows == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 16;
		struct csvdoc_row *grown = realloc(doc->rows, cap * sizeof(*grown));
		if (grown == NULL) {
			csvdoc_fail(st, CSVDOC_ENOMEM, "out of memory");
			return;
		}
		doc->rows = grown;
		st->cap = cap;
	}
	st->cur.number = doc->nrows + 1;
	doc->rows[doc->nrows++] = st->cur;
	memset(&st->cur, 0, sizeof(st->cur));
	st->curcap = 0;
}

int csvdoc_parse(const char *buf, size_t len, size_t max_data_rows, struct csvdoc **out, char **cause)
{
	struct csvdoc_state st = { .max_rows = max_data_rows + 1 };
	struct csv_parser p;
	int rc = 0;

	*cause = NULL;
	st.doc = calloc(1, sizeof(*st.doc));
	if (st.doc == NULL || csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_EMPTY_IS_NULL) != 0) {
		free(st.doc);
		*cause = strdup("out of memory");
		return CSVDOC_ENOMEM;
	}
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
		buf += 3;
		len -= 3;
	}
	if (csv_parse(&p, buf, len, csvdoc_field, csvdoc_row_end, &st) != len && !st.err)
		csvdoc_fail(&st, CSVDOC_EPARSE, csv_strerror(csv_error(&p)));
	if (!st.err && csv_fini(&p, csvdoc_field, csvdoc_row_end, &st) != 0)
		csvdoc_fail(&st, CSVDOC_EPARSE, csv_strerror(csv_error(&p)));
	csv_free(&p);
	csvdoc_row_clear(&st.cur);
	if (st.err) {
		rc = st.err;
		*cause = st.cause;
		csvdoc_free(st.doc);
		return rc;
	}
	*out = st.doc;
	return 0;
}

void csvdoc_free(struct csvdoc *doc)
{
	if (doc == NULL)
		return;
	for (size_t i = 0; i < doc->nrows; i++)
		csvdoc_row_clear(&doc->rows[i]);
	free(doc->rows);
	free(doc);
}

int csvdoc_write_text(char *out, size_t outlen, size_t *off, const char *field)
{
	size_t len = strlen(field), need;
	char small[CSVDOC_FIELD_MAX + 2], *tmp;

	if (field[0] == '\0' || strchr("=+-@\t\r", field[0]) == NULL)
		return csvdoc_write_field(out, outlen, off, field);
	tmp = len + 2 <= sizeof(small) ? small : malloc(len + 2);
	if (tmp == NULL)
		return -1;
	tmp[0] = '\'';
	memcpy(tmp + 1, field, len + 1);
	need = csv_write(NULL, 0, tmp, len + 1);
	if (*off + need >= outlen) {
		if (tmp != small)
			free(tmp);
		return -1;
	}
	csv_write(out + *off, outlen - *off, tmp, len + 1);
	*off += need;
	out[*off] = '\0';
	if (tmp != small)
		free(tmp);
	return 0;
}

int csvdoc_write_field(char *out, size_t outlen, size_t *off, const char *field)
{
	size_t len = strlen(field);
	bool quote = strpbrk(field, ",\"\r\n") != NULL;
	size_t need;

	if (!quote) {
		if (*off + len >= outlen)
			return -1;
		memcpy(out + *off, field, len);
		*off += len;
		out[*off] = '\0';
		return 0;
	}
	need = csv_write(NULL, 0, field, len);
	if (*off + need >= outlen)
		return -1;
	csv_write(out + *off, outlen - *off, field, len);
	*off += need;
	out[*off] = '\0';
	return 0;
}
