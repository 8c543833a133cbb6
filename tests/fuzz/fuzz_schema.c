/* The records bootstrapd reads back from Redis (docs/key-schema.md): a
 * device record, a batch's targets, a product's fields, the stored numbers.
 * Redis is ours, but what is in it may have been written by another version
 * or by hand: no byte may crash a reader, and what parses formats back to
 * something that parses the same. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "schema.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static void fuzz_device(const char *s, size_t len)
{
	struct schema_device d, again;
	char buf[SCHEMA_DEVICE_RECORD_MAX];
	int n;

	if (schema_device_parse(s, len, &d) < 0)
		return;
	fuzz_assert(d.status == SCHEMA_ACTIVE || d.status == SCHEMA_INACTIVE);
	fuzz_assert(d.notify_row >= -1 && d.notify_row <= 999999);
	n = schema_device_format(&d, buf, sizeof(buf));
	fuzz_assert(n > 0);
	fuzz_assert(schema_device_parse(buf, (size_t)n, &again) == 0);
	fuzz_assert(again.batch == d.batch && again.status == d.status && again.registered_at == d.registered_at);
	fuzz_assert(again.activated_at == d.activated_at && again.last_bootstrap_at == d.last_bootstrap_at);
	fuzz_assert(strcmp(again.last_region, d.last_region) == 0 && again.notify_row == d.notify_row);
	fuzz_assert(strcmp(again.notify_state, d.notify_state) == 0);
	fuzz_assert(strcmp(again.notify_instance, d.notify_instance) == 0);
}

static void fuzz_targets(const char *s, size_t len)
{
	struct schema_batch b = { 0 }, again = { 0 };
	char buf[SCHEMA_TARGETS_MAX * (CATALOG_REGION_ID_MAX + CATALOG_INSTANCE_ID_MAX + 2) + 1];
	int n;

	if (schema_targets_parse(s, len, &b) < 0)
		return;
	fuzz_assert(b.ntargets >= 1 && b.ntargets <= SCHEMA_TARGETS_MAX);
	n = schema_targets_format(&b, buf, sizeof(buf));
	fuzz_assert(n > 0);
	fuzz_assert(schema_targets_parse(buf, (size_t)n, &again) == 0 && again.ntargets == b.ntargets);
	for (size_t i = 0; i < b.ntargets; i++) {
		fuzz_assert(strcmp(again.targets[i].region, b.targets[i].region) == 0);
		fuzz_assert(strcmp(again.targets[i].instance, b.targets[i].instance) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	struct schema_product p = { 0 };
	uint64_t u;
	int64_t i;

	fuzz_device(text, size);
	fuzz_targets(text, size);
	for (int f = 0; f < SCHEMA_P_NFIELDS; f++)
		(void)schema_product_set(&p, (enum schema_product_field)f, text, size);
	if (schema_parse_u64(text, size, &u) == 0)
		fuzz_assert(size >= 1 && size <= 20);
	if (schema_parse_i64(text, size, &i) == 0)
		fuzz_assert(size >= 1 && size <= 21); /* a sign and 20 digits */
	free(text);
	return 0;
}
