/* csvdoc_parse, the CSV upload reader (batches, registrations), and
 * csvdoc_write_field, whose output must read back as the same field. */
#include <stdlib.h>
#include <string.h>

#include "csvdoc.h"
#include "fuzz.h"

#define MAX_ROWS 64

/* Writes FIELD as a one-field document and reads it back. Fields that
 * libcsv trims or skips (edge spaces or tabs, a leading BOM, empty) are left out. */
static void round_trip(const char *field)
{
	size_t len = strlen(field), off = 0;
	char out[2 * CSVDOC_FIELD_MAX + 8], *cause = NULL;
	struct csvdoc *doc = NULL;

	if (len == 0 || strchr(" \t", field[0]) || strchr(" \t", field[len - 1]) ||
	    strncmp(field, "\xef\xbb\xbf", 3) == 0)
		return;
	fuzz_assert(csvdoc_write_field(out, sizeof(out), &off, field) == 0);
	fuzz_assert(off < sizeof(out) && strlen(out) == off);
	fuzz_assert(csvdoc_parse(out, off, 1, &doc, &cause) == 0);
	fuzz_assert(doc->nrows == 1 && doc->rows[0].nfields == 1 && strcmp(doc->rows[0].fields[0], field) == 0);
	csvdoc_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1), *cause = NULL;
	struct csvdoc *doc = NULL;
	int rc;

	if (size)
		memcpy(buf, data, size);
	rc = csvdoc_parse(buf, size, MAX_ROWS, &doc, &cause);
	if (rc == 0) {
		fuzz_assert(cause == NULL && doc->nrows <= MAX_ROWS + 1);
		for (size_t i = 0; i < doc->nrows; i++) {
			const struct csvdoc_row *r = &doc->rows[i];

			fuzz_assert(r->number == i + 1 && r->nfields >= 1);
			for (size_t f = 0; f < r->nfields; f++) {
				size_t len = strlen(r->fields[f]);

				fuzz_assert(len <= CSVDOC_FIELD_MAX && csvdoc_valid_text(r->fields[f], len));
				round_trip(r->fields[f]);
			}
		}
		csvdoc_free(doc);
	} else {
		fuzz_assert(rc == CSVDOC_EPARSE || rc == CSVDOC_ETOO_MANY || rc == CSVDOC_ENOMEM);
		free(cause);
	}
	free(buf);
	return 0;
}
