/* csvdoc: an uploaded CSV document read whole with libcsv (RFC 4180 quoting,
 * CRLF or LF, optional UTF-8 BOM, blank lines skipped) into rows of
 * NUL-terminated fields. Pure. */
#ifndef BOOTSTRAPD_CSVDOC_H
#define BOOTSTRAPD_CSVDOC_H

#include <stddef.h>

#define CSVDOC_FIELD_MAX 256 /* longer fields are an error */

struct csvdoc_row {
	size_t number; /* 1-based record number; the header is row 1 */
	size_t nfields;
	char **fields;
};

struct csvdoc {
	struct csvdoc_row *rows; /* rows[0] is the header */
	size_t nrows;
};

enum csvdoc_error { CSVDOC_EPARSE = -1, CSVDOC_ETOO_MANY = -2, CSVDOC_ENOMEM = -3 };

/* Parses BUF. At most MAX_DATA_ROWS rows after the header: one more gives
 * CSVDOC_ETOO_MANY. Text must be UTF-8 without control characters. On error
 * returns a negative enum csvdoc_error with *cause naming the row. */
int csvdoc_parse(const char *buf, size_t len, size_t max_data_rows, struct csvdoc **out, char **cause)
	__attribute__((warn_unused_result));
void csvdoc_free(struct csvdoc *doc);

/* Appends FIELD to OUT (size OUTLEN at *OFF), quoted when it needs to be.
 * Returns 0, or -1 when it does not fit. */
int csvdoc_write_field(char *out, size_t outlen, size_t *off, const char *field)
	__attribute__((warn_unused_result));

/* The same for a cell that echoes what a client sent: one that a
 * spreadsheet would run as a formula (it starts with '=', '+', '-', '@', a
 * tab or a CR) is written quoted behind a "'", as OWASP recommends against
 * CSV injection. A validated device name is written with
 * csvdoc_write_field (docs/api.md, "CSV files"). */
int csvdoc_write_text(char *out, size_t outlen, size_t *off, const char *field)
	__attribute__((warn_unused_result));

/* 1 when S (LEN bytes) is valid UTF-8 without control characters, else 0. */
int csvdoc_valid_text(const char *s, size_t len);

#endif
