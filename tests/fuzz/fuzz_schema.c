/* The records bootstrapd reads back from Redis (docs/key-schema.md): a
 * device record, a batch's targets, a product's fields, the stored numbers,
 * the codes table (its HGETALL answer: the input split at newlines), a
 * pre-auth token's record.
 * Redis is ours, but what is in it may have been written by another version
 * or by hand: no byte may crash a reader, and what parses formats back to
 * something that parses the same. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "codes.h"
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
	fuzz_assert(strcmp(again.last_region_code, d.last_region_code) == 0 && again.notify_row == d.notify_row);
	fuzz_assert(strcmp(again.notify_state, d.notify_state) == 0);
	fuzz_assert(strcmp(again.notify_instance_code, d.notify_instance_code) == 0);
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

/* Every code the table took maps back to its id, and every id to its code. */
static void fuzz_codes(const char *s, size_t len)
{
	redisReply items[64], table = { .type = REDIS_REPLY_ARRAY }, *elems[64];
	struct codes *c = codes_new(NULL, 1);
	size_t start = 0;

	if (c == NULL)
		return;
	table.element = elems;
	for (size_t i = 0; i <= len && table.elements < 64; i++) {
		if (i < len && s[i] != '\n')
			continue;
		items[table.elements] = (redisReply){ .type = REDIS_REPLY_STRING, .str = (char *)s + start,
			.len = i - start };
		elems[table.elements] = &items[table.elements];
		table.elements++;
		start = i + 1;
	}
	if (codes_load(c, &table) == 0) {
		for (size_t i = 0; i + 1 < table.elements; i += 2) {
			const redisReply *f = elems[i], *v = elems[i + 1];
			char id[256];
			if (f->len < 3 || f->len >= sizeof(id) || f->str[1] != ':' ||
			    (f->str[0] != CODES_REGION && f->str[0] != CODES_INSTANCE) || memchr(f->str, '\0', f->len))
				continue;
			memcpy(id, f->str + 2, f->len - 2);
			id[f->len - 2] = '\0';
			const char *code = codes_code(c, (enum codes_kind)f->str[0], id);
			fuzz_assert(code != NULL && strlen(code) == v->len && memcmp(code, v->str, v->len) == 0);
			const char *back = codes_id(c, (enum codes_kind)f->str[0], v->str, v->len);
			fuzz_assert(back != NULL && strcmp(back, id) == 0);
		}
	}
	codes_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size);
	struct schema_product p = { 0 };
	uint64_t u;
	int64_t i;

	fuzz_device(text, size);
	fuzz_targets(text, size);
	fuzz_codes(text, size);
	{
		struct schema_preauth pa, pb;
		char buf[256];
		if (schema_preauth_parse(text, size, &pa) == 0) {
			int n = schema_preauth_format(&pa, buf, sizeof(buf));
			fuzz_assert(n > 0 && schema_preauth_parse(buf, (size_t)n, &pb) == 0);
			fuzz_assert(pa.expires == pb.expires && strcmp(pa.field, pb.field) == 0 &&
				strcmp(pa.token_sha256, pb.token_sha256) == 0);
		}
	}
	for (int f = 0; f < SCHEMA_P_NFIELDS; f++)
		(void)schema_product_set(&p, (enum schema_product_field)f, text, size);
	if (schema_parse_u64(text, size, &u) == 0)
		fuzz_assert(size >= 1 && size <= 20);
	if (schema_parse_i64(text, size, &i) == 0)
		fuzz_assert(size >= 1 && size <= 21); /* a sign and 20 digits */
	free(text);
	return 0;
}
