/* batch: a distribution batch as uploaded (SPEC §5), read and checked whole
 * before anything is written: the query string or JSON parameters, the CSV or
 * JSON rows, the targets against the catalog. Per-row problems that are known
 * from the upload alone (a malformed name, a repeated row) are marked on the
 * item; the worker records them as that row's failure. Pure. */
#ifndef BOOTSTRAPD_BATCH_H
#define BOOTSTRAPD_BATCH_H

#include <stddef.h>

#include "catalog.h"
#include "schema.h"

#define BATCH_AUTH_CODE_LEN 6 /* decimal digits */

enum batch_kind { BATCH_DEVICES = 'd', BATCH_PRODUCTS = 'p' };

/* What the upload already says about a row. */
enum batch_tag {
	BATCH_TAG_OK = '+',
	BATCH_TAG_DUPLICATE = 'D',    /* the same productKey/deviceName in an earlier row */
	BATCH_TAG_INVALID_NAME = 'N', /* malformed deviceName or productKey */
};

struct batch_item {
	char tag;           /* enum batch_tag */
	char *product_key;  /* as uploaded (UTF-8, no control characters) */
	char *device_name;  /* as uploaded; NULL for a products batch */
	size_t row;         /* CSV record number (header = 1) or JSON index + 1 */
};

struct batch_request {
	enum batch_kind kind;
	char strategy; /* SCHEMA_REGION or SCHEMA_NEAREST */
	/* region: one target; nearest: the candidates. Instance ids are resolved
	 * (a region alone means its default instance) and exist in the catalog. */
	struct schema_target targets[SCHEMA_TARGETS_MAX];
	size_t ntargets;
	char *target_account; /* NULL unless cross-account */
	char *auth_code;      /* 6 digits; set iff target_account is */
	struct batch_item *items;
	size_t nitems;
};

struct batch_error {
	int status;       /* 400, 413 or 415; 500 ("internal") when out of memory */
	const char *code; /* docs/batches.md "Whole-batch rejections", static */
	char message[256]; /* names the row and column, or the parameter */
};

/* Reads an upload. QUERY is the raw query string (NULL if none),
 * CONTENT_TYPE the request's header (NULL if none), BODY/LEN the body (not
 * NUL-terminated). MAX_DEVICES is limits.batch_max_devices. Returns 0 with
 * *OUT (free with batch_request_free), or -1 with ERR filled in. */
int batch_parse(const char *query, const char *content_type, const char *body, size_t len,
	const struct catalog *cat, size_t max_devices, struct batch_request **out, struct batch_error *err)
	__attribute__((warn_unused_result));
/* Details of batch_parse. Checks run in this order and the first failure is
 * reported: the media type; the query string (every '%' must start a %XX
 * escape, "%00" refused; unknown name, non-text value or a name given twice is
 * invalid_parameter); the JSON body (strict syntax, at most 8 levels deep, no
 * \u0000; unknown or repeated keys and wrong types are invalid_json, paths
 * named with 0-based indexes as in "devices[3].deviceName"); the parameters
 * (strategy, then invalid_strategy, then targets, then account and code); the
 * rows. An empty value, JSON "" or an empty JSON regions list counts as
 * absent. JSON item strings obey the CSV field rules (text, at most
 * CSVDOC_FIELD_MAX bytes). A row repeating a malformed row is tagged
 * INVALID_NAME like it; DUPLICATE marks repeats among well-formed rows, the
 * first of them staying OK. Items come in upload order. On error *OUT is
 * left untouched. */
void batch_request_free(struct batch_request *req); /* accepts NULL */

/* The CSV template served at GET /v1/batches/template.csv. */
extern const char batch_template_csv[];

#endif
