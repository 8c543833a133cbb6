/* registry: the admin API's registry uploads (SPEC §5), read and checked
 * before anything is written: a product's PUT body, and a device
 * registration (CSV, or {"count":N}). Errors carry the answer's status and
 * code, as in batch. Pure. */
#ifndef BOOTSTRAPD_REGISTRY_H
#define BOOTSTRAPD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "catalog.h"
#include "schema.h"
#include "secret.h"

#define REGISTRY_DEVICES_MAX 10000 /* devices per registration call */

struct registry_error {
	int status;        /* 400, 413; 500 ("internal") when out of memory */
	const char *code;  /* static */
	char message[512]; /* names the row and column, or the field */
};

struct registry_product {
	const struct catalog_region *region;     /* borrowed from the catalog */
	const struct catalog_instance *instance; /* the region's default when not given */
	char account[SCHEMA_ACCOUNT_MAX + 1];    /* "default" when not given */
	bool locked;
	const char *auth; /* "none" or "required", static */
	enum schema_dynreg dynreg; /* "dynamicRegistration", off when not given (SPEC §9) */
	bool pre_auth;             /* "preAuth" (SPEC §10) */
};

/* Reads a PUT /v1/products/{productKey} body: TEXT (LEN bytes and a NUL after
 * them) is strict JSON (jsonstrict), its regions and instances looked up in
 * CAT. Returns 0 with *OUT filled, or -1 with ERR. */
int registry_product_parse(const char *text, size_t len, const struct catalog *cat, struct registry_product *out,
	struct registry_error *err) __attribute__((warn_unused_result));

struct registry_device {
	char name[CATALOG_DEVICE_NAME_MAX + 1];
	char secret[SECRET_PLAIN_MAX + 1]; /* "" when the service is to generate it */
	size_t row;                        /* CSV record number (header = 1), or index + 1 */
};

/* Reads a text/csv registration (BUF, LEN bytes): header "deviceName" or
 * "deviceName,deviceSecret", 1..REGISTRY_DEVICES_MAX rows, valid names and
 * secrets, no name twice. Returns the count with *OUT (caller frees; it
 * holds secrets: cleanse it first), or -1 with ERR. */
long registry_devices_csv(const char *buf, size_t len, struct registry_device **out,
	struct registry_error *err) __attribute__((warn_unused_result));

/* Reads an application/json registration, {"count":N} in strict JSON (TEXT:
 * LEN bytes and a NUL after them). Returns N (1..REGISTRY_DEVICES_MAX), or -1
 * with ERR. */
long registry_devices_count(const char *text, size_t len, struct registry_error *err)
	__attribute__((warn_unused_result));

/* Refuses a name given twice among the N devices of D, naming both rows:
 * 0, or -1 with ERR. */
int registry_devices_unique(const struct registry_device *d, size_t n, struct registry_error *err)
	__attribute__((warn_unused_result));

#endif
