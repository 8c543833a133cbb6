#include "schema.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <inttypes.h>

const char *const schema_product_fields[SCHEMA_P_NFIELDS] = {
	"hr", "hi", "ac", "lk", "ba", "pb", "ct", "ut", "dr", "pa",
};

const char *const schema_dynreg_names[3] = { "off", "preregistered", "open" };

uint32_t schema_bucket(const char *product_key, const char *device_name)
{
	uint32_t h = 0x811c9dc5u;
	const unsigned char *p;

	for (p = (const unsigned char *)product_key; *p; p++)
		h = (h ^ *p) * 0x01000193u;
	h = (h ^ '/') * 0x01000193u;
	for (p = (const unsigned char *)device_name; *p; p++)
		h = (h ^ *p) * 0x01000193u;
	return h & ((1u << SCHEMA_BUCKET_BITS) - 1);
}

bool schema_valid_account(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SCHEMA_ACCOUNT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

static int schema_fit(int n, size_t len)
{
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* Key building is on every device request: by hand, not printf. */
static int schema_join(char *buf, size_t len, const char *a, size_t al, const char *b, size_t bl)
{
	if (al + bl >= len)
		return -1;
	memcpy(buf, a, al);
	memcpy(buf + al, b, bl);
	buf[al + bl] = '\0';
	return (int)(al + bl);
}

static unsigned schema_hex_value(char c)
{
	return c >= 'a' ? (unsigned)(c - 'a' + 10) : (unsigned)(c - '0');
}

static char schema_hex(unsigned v)
{
	return "0123456789abcdef"[v & 15];
}

/* "bd:{G}:" for the group of BUCKET: 7 + 3 bytes, no NUL. */
static size_t schema_group_prefix(char *p, uint32_t group)
{
	memcpy(p, "bd:{", 4);
	p[4] = schema_hex(group >> 8);
	p[5] = schema_hex(group >> 4);
	p[6] = schema_hex(group);
	memcpy(p + 7, "}:", 2);
	return 9;
}

/* Key building is on every device request: by hand, not printf. */
int schema_bucket_key(char *buf, size_t len, char part, uint32_t bucket)
{
	size_t n;

	if ((part != 'd' && part != 's') || len < 17 || bucket >> SCHEMA_BUCKET_BITS)
		return -1;
	n = schema_group_prefix(buf, schema_group(bucket));
	buf[n++] = part;
	buf[n++] = ':';
	for (int i = 4; i >= 0; i--, bucket >>= 4)
		buf[n + (size_t)i] = schema_hex(bucket);
	buf[n + 5] = '\0';
	return (int)(n + 5);
}

int schema_counters_key(char *buf, size_t len, uint32_t group)
{
	size_t n;

	if (len < 11 || group >= SCHEMA_GROUPS)
		return -1;
	n = schema_group_prefix(buf, group);
	buf[n++] = 'c';
	buf[n] = '\0';
	return (int)n;
}

int schema_dynreg_random_key(char *buf, size_t len, const char *product_key, const char *device_name,
	const char *random)
{
	uint32_t group = schema_group(schema_bucket(product_key, device_name));
	char prefix[16];
	int n;

	schema_group_prefix(prefix, group);
	n = snprintf(buf, len, "%.9sn:%s/%s:%s", prefix, product_key, device_name, random);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

static size_t schema_split(const char *s, size_t len, char sep, const char **f, size_t *fl, size_t n);

int schema_iot_id(char *out, const char *product_key, const char *device_name, const char *derived)
{
	uint32_t group = schema_group(schema_bucket(product_key, device_name));

	if (strlen(derived) != SCHEMA_IOT_ID_LEN - 3)
		return -1;
	return snprintf(out, SCHEMA_IOT_ID_LEN + 1, "%03x%s", (unsigned)group, derived) == SCHEMA_IOT_ID_LEN ? 0 : -1;
}

int schema_preauth_key(char *buf, size_t len, const char *iot_id)
{
	unsigned long group;
	int n;

	if (strlen(iot_id) != SCHEMA_IOT_ID_LEN || strspn(iot_id, "0123456789abcdef") != SCHEMA_IOT_ID_LEN)
		return -1;
	group = (unsigned long)schema_hex_value(iot_id[0]) << 8 | (unsigned long)schema_hex_value(iot_id[1]) << 4 |
		(unsigned long)schema_hex_value(iot_id[2]);
	if (group >= SCHEMA_GROUPS)
		return -1;
	n = snprintf(buf, len, "bd:{%.3s}:a:%s", iot_id, iot_id);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

int schema_preauth_format(const struct schema_preauth *p, char *buf, size_t len)
{
	return schema_fit(snprintf(buf, len, "%lld;%s;%s", (long long)p->expires, p->token_sha256, p->field), len);
}

int schema_preauth_parse(const char *s, size_t len, struct schema_preauth *out)
{
	const char *f[4];
	size_t fl[4];

	memset(out, 0, sizeof(*out));
	if (schema_split(s, len, ';', f, fl, 4) != 3 || schema_parse_i64(f[0], fl[0], &out->expires) < 0 ||
	    fl[1] != 64 || fl[2] == 0 || fl[2] >= sizeof(out->field) || memchr(f[2], '/', fl[2]) == NULL)
		return -1;
	for (size_t i = 0; i < 64; i++)
		if (!((f[1][i] >= '0' && f[1][i] <= '9') || (f[1][i] >= 'a' && f[1][i] <= 'f')))
			return -1;
	/* "{productKey}/{deviceName}": visible ASCII, one '/'. */
	for (size_t i = 0, slashes = 0; i < fl[2]; i++)
		if (f[2][i] <= ' ' || f[2][i] > '~' || (f[2][i] == '/' && ++slashes > 1))
			return -1;
	memcpy(out->token_sha256, f[1], 64);
	memcpy(out->field, f[2], fl[2]);
	return 0;
}

int schema_registrations_key(char *buf, size_t len, const char *product_key, char part, int64_t t)
{
	char day[16];
	time_t tt = (time_t)t;
	struct tm tm;
	int n;

	if (part == 'm' || part == 'n')
		n = snprintf(buf, len, SCHEMA_PRODUCTS_KEY ":%s:%s", product_key, part == 'm' ? "regs" : "regn");
	else if (part == 'd' && t >= 0 && gmtime_r(&tt, &tm) != NULL && strftime(day, sizeof(day), "%Y%m%d", &tm) == 8)
		n = snprintf(buf, len, SCHEMA_PRODUCTS_KEY ":%s:rd:%s", product_key, day);
	else
		return -1;
	return n < 0 || (size_t)n >= len ? -1 : n;
}

int schema_sub_state_key(char *buf, size_t len, uint64_t id)
{
	int n = snprintf(buf, len, "bd:{h}:s:%" PRIu64, id);

	return n < 0 || (size_t)n >= len ? -1 : n;
}

int schema_activations_key(char *buf, size_t len, int64_t t, unsigned *slot)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t < 0 || gmtime_r(&tt, &tm) == NULL || len < 21)
		return -1;
	if (slot)
		*slot = (unsigned)((tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) / SCHEMA_ACTIVATIONS_SLOT_S);
	return (int)strftime(buf, len, "bd:{s}:act:%Y%m%d", &tm);
}

int schema_product_key(char *buf, size_t len, const char *product_key)
{
	return schema_join(buf, len, SCHEMA_PRODUCTS_KEY ":", sizeof(SCHEMA_PRODUCTS_KEY), product_key,
		strlen(product_key));
}

int schema_device_key(char *buf, size_t len, const char *product_key, const char *device_name)
{
	return schema_bucket_key(buf, len, 'd', schema_bucket(product_key, device_name));
}

int schema_secret_key(char *buf, size_t len, const char *product_key, const char *device_name)
{
	return schema_bucket_key(buf, len, 's', schema_bucket(product_key, device_name));
}

int schema_device_field(char *buf, size_t len, const char *product_key, const char *device_name)
{
	size_t pl = strlen(product_key), dl = strlen(device_name);

	if (pl + 1 + dl >= len)
		return -1;
	memcpy(buf, product_key, pl);
	buf[pl] = '/';
	memcpy(buf + pl + 1, device_name, dl + 1);
	return (int)(pl + 1 + dl);
}

int schema_batch_key(char *buf, size_t len, uint64_t seq)
{
	return schema_fit(snprintf(buf, len, "bd:{b}:%" PRIu64, seq), len);
}

int schema_auth_code_key(char *buf, size_t len, const char *account, const char *code)
{
	return schema_fit(snprintf(buf, len, "bd:{b}:ac:%s:%s", account, code), len);
}

int schema_outbox_key(char *buf, size_t len, const char *broker)
{
	return schema_fit(snprintf(buf, len, "bd:o:{%s}", broker), len);
}

int schema_batch_part_key(char *buf, size_t len, uint64_t seq, char part)
{
	if (part != 'i' && part != 'r' && part != 'n' && part != 'f')
		return -1;
	return schema_fit(snprintf(buf, len, "bd:{b}:%" PRIu64 ":%c", seq, part), len);
}

int schema_key_named(char *buf, size_t len, const char *kind, const char *const *args, size_t nargs)
{
	static const struct {
		const char *kind, *key;
	} fixed[] = {
		{ "batches", SCHEMA_BATCHES_KEY }, { "batch-seq", SCHEMA_BATCH_SEQ_KEY }, { "steps", SCHEMA_STEPS_KEY },
		{ "batch-counters", SCHEMA_STATS_BATCHES_KEY }, { "products", SCHEMA_PRODUCTS_KEY },
		{ "schema", SCHEMA_VERSION_KEY },
		{ "codes", SCHEMA_CODES_KEY },
		{ "audit", SCHEMA_AUDIT_KEY },
		{ "subscriptions", SCHEMA_SUBS_KEY },
		{ "subscription-seq", SCHEMA_SUBS_SEQ_KEY },
		{ "events", SCHEMA_EVENTS_KEY },
	};
	static const struct {
		const char *kind;
		char part;
	} device[] = { { "device", 'd' }, { "secret", 's' }, { "counters", 'c' } },
	  batch[] = { { "batch", 0 }, { "rows", 'i' }, { "results", 'r' }, { "notifies", 'n' }, { "failures", 'f' } };
	uint64_t seq;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (strcmp(kind, fixed[i].kind) == 0)
			return nargs == 0 ? schema_join(buf, len, fixed[i].key, strlen(fixed[i].key), "", 0) : -1;
	if (strcmp(kind, "product") == 0)
		return nargs == 1 ? schema_product_key(buf, len, args[0]) : -1;
	if (strcmp(kind, "outbox") == 0)
		return nargs == 1 ? schema_outbox_key(buf, len, args[0]) : -1;
	if (strcmp(kind, "activations") == 0) {
		int64_t t;
		return nargs == 1 && schema_parse_i64(args[0], strlen(args[0]), &t) == 0 ?
			schema_activations_key(buf, len, t, NULL) : -1;
	}
	if (strcmp(kind, "registrations") == 0 || strcmp(kind, "registration-names") == 0)
		return nargs == 1 ? schema_registrations_key(buf, len, args[0], kind[12] == '-' ? 'n' : 'm', 0) : -1;
	if (strcmp(kind, "registrations-day") == 0) {
		int64_t t;
		return nargs == 2 && schema_parse_i64(args[1], strlen(args[1]), &t) == 0 ?
			schema_registrations_key(buf, len, args[0], 'd', t) : -1;
	}
	if (strcmp(kind, "subscription") == 0) {
		uint64_t id;
		return nargs == 1 && schema_parse_u64(args[0], strlen(args[0]), &id) == 0 ?
			schema_sub_state_key(buf, len, id) : -1;
	}
	if (strcmp(kind, "preauth") == 0)
		return nargs == 1 ? schema_preauth_key(buf, len, args[0]) : -1;
	if (strcmp(kind, "random") == 0)
		return nargs == 3 ? schema_dynreg_random_key(buf, len, args[0], args[1], args[2]) : -1;
	for (size_t i = 0; i < sizeof(device) / sizeof(device[0]); i++) {
		if (strcmp(kind, device[i].kind) != 0)
			continue;
		if (nargs != 2)
			return -1;
		uint32_t b = schema_bucket(args[0], args[1]);
		return device[i].part == 'c' ? schema_counters_key(buf, len, schema_group(b))
					     : schema_bucket_key(buf, len, device[i].part, b);
	}
	for (size_t i = 0; i < sizeof(batch) / sizeof(batch[0]); i++) {
		if (strcmp(kind, batch[i].kind) != 0)
			continue;
		if (nargs != 1 || schema_parse_u64(args[0], strlen(args[0]), &seq) < 0)
			return -1;
		return batch[i].part ? schema_batch_part_key(buf, len, seq, batch[i].part) : schema_batch_key(buf, len, seq);
	}
	return -1;
}

int schema_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int schema_parse_i64(const char *s, size_t len, int64_t *out)
{
	uint64_t v;
	bool neg = len > 0 && s[0] == '-';

	if (schema_parse_u64(s + neg, len - neg, &v) < 0 || v > (uint64_t)INT64_MAX)
		return -1;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* Splits S at ';' into at most N fields; returns the number found. */
static size_t schema_split(const char *s, size_t len, char sep, const char **f, size_t *fl, size_t n)
{
	size_t k = 0, start = 0;

	for (size_t i = 0; i <= len && k < n; i++) {
		if (i == len || s[i] == sep) {
			f[k] = s + start;
			fl[k] = i - start;
			k++;
			start = i + 1;
		}
	}
	return k;
}

/* The catalog's id alphabets: regions [a-z0-9-], instances [A-Za-z0-9_.-]. */
static bool schema_is_id(const char *s, size_t len, bool instance)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			    (instance && ((c >= 'A' && c <= 'Z') || c == '_' || c == '.'))))
			return false;
	}
	return true;
}

int schema_time_format(int64_t t, char *out, size_t len)
{
	char tmp[16];
	size_t n = 0;
	uint64_t v = t < 0 ? 0 : (uint64_t)t;

	do {
		tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
		v /= 36;
	} while (v > 0);
	if (n >= len)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return (int)n;
}

/* A base-36 time as schema_time_format() writes it: 1 to 13 of [0-9a-z],
 * no leading zero but for "0", within int64. */
static int schema_time_parse(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 13 || (len > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned d;
		if (s[i] >= '0' && s[i] <= '9')
			d = (unsigned)(s[i] - '0');
		else if (s[i] >= 'a' && s[i] <= 'z')
			d = 10u + (unsigned)(s[i] - 'a');
		else
			return -1;
		if (v > ((uint64_t)INT64_MAX - d) / 36)
			return -1;
		v = v * 36 + d;
	}
	*out = (int64_t)v;
	return 0;
}

bool schema_valid_code(const char *s, size_t len)
{
	if (len == 0 || len > SCHEMA_CODE_MAX || s[0] == '0')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z')))
			return false;
	return true;
}

/* A notify state and the letter a record holds it as (its first). */
static const char *const schema_notify_states[] = { "pending", "sent", "acked", "none" };

/* The notify part "row:state:instance" (LEN > 0): state a letter, instance a code. */
static int schema_notify_parse(const char *s, size_t len, struct schema_device *out)
{
	const char *f[4];
	size_t fl[4];
	uint64_t row;
	const char *state = NULL;

	if (schema_split(s, len, ':', f, fl, 4) != 3 || schema_parse_u64(f[0], fl[0], &row) < 0 || row > 999999)
		return -1;
	for (size_t i = 0; fl[1] == 1 && i < sizeof(schema_notify_states) / sizeof(schema_notify_states[0]); i++)
		if (f[1][0] == schema_notify_states[i][0])
			state = schema_notify_states[i];
	/* No instance: a product's home without one had no broker ("none"). */
	if (state == NULL || (fl[2] > 0 && !schema_valid_code(f[2], fl[2])))
		return -1;
	out->notify_row = (long)row;
	memcpy(out->notify_state, state, strlen(state) + 1);
	memcpy(out->notify_instance_code, f[2], fl[2]);
	out->notify_instance_code[fl[2]] = '\0';
	return 0;
}

int schema_device_parse(const char *s, size_t len, struct schema_device *out)
{
	const char *f[8];
	size_t fl[8];

	memset(out, 0, sizeof(*out));
	out->notify_row = -1;
	if (schema_split(s, len, ';', f, fl, 8) != 7)
		return -1;
	if (schema_parse_u64(f[0], fl[0], &out->batch) < 0)
		return -1;
	if (fl[1] != 1 || (f[1][0] != SCHEMA_ACTIVE && f[1][0] != SCHEMA_INACTIVE))
		return -1;
	out->status = f[1][0];
	if (schema_time_parse(f[2], fl[2], &out->registered_at) < 0 ||
	    schema_time_parse(f[3], fl[3], &out->activated_at) < 0 ||
	    schema_time_parse(f[4], fl[4], &out->last_bootstrap_at) < 0)
		return -1;
	if (fl[5] > 0 && !schema_valid_code(f[5], fl[5]))
		return -1;
	memcpy(out->last_region_code, f[5], fl[5]);
	out->last_region_code[fl[5]] = '\0';
	if (fl[6] > 0 && schema_notify_parse(f[6], fl[6], out) < 0)
		return -1;
	return 0;
}

int schema_device_format(const struct schema_device *d, char *buf, size_t len)
{
	char reg[16], act[16], last[16];

	if (schema_time_format(d->registered_at, reg, sizeof(reg)) < 0 ||
	    schema_time_format(d->activated_at, act, sizeof(act)) < 0 ||
	    schema_time_format(d->last_bootstrap_at, last, sizeof(last)) < 0)
		return -1;
	if (d->notify_row < 0)
		return schema_fit(snprintf(buf, len, "%" PRIu64 ";%c;%s;%s;%s;%s;", d->batch, d->status, reg, act, last,
			d->last_region_code), len);
	return schema_fit(snprintf(buf, len, "%" PRIu64 ";%c;%s;%s;%s;%s;%ld:%c:%s", d->batch, d->status, reg, act,
		last, d->last_region_code, d->notify_row, d->notify_state[0], d->notify_instance_code), len);
}

static int schema_copy(char *dst, size_t dstlen, const char *s, size_t len)
{
	if (len >= dstlen)
		return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

int schema_product_set(struct schema_product *p, enum schema_product_field f, const char *value, size_t len)
{
	if (value == NULL) {
		value = "";
		len = 0;
	}
	switch (f) {
	case SCHEMA_P_HOME_REGION:
		return schema_copy(p->home_region, sizeof(p->home_region), value, len);
	case SCHEMA_P_HOME_INSTANCE:
		return schema_copy(p->home_instance, sizeof(p->home_instance), value, len);
	case SCHEMA_P_ACCOUNT:
		return schema_copy(p->account, sizeof(p->account), value, len);
	case SCHEMA_P_LOCKED:
		p->locked = len == 1 && value[0] == '1';
		return 0;
	case SCHEMA_P_AUTH:
		p->auth_required = len == 8 && memcmp(value, "required", 8) == 0;
		return 0;
	case SCHEMA_P_BATCH:
		p->batch = 0;
		return len == 0 ? 0 : schema_parse_u64(value, len, &p->batch);
	case SCHEMA_P_CREATED:
		p->created_at = 0;
		return len == 0 ? 0 : schema_parse_i64(value, len, &p->created_at);
	case SCHEMA_P_UPDATED:
		p->updated_at = 0;
		return len == 0 ? 0 : schema_parse_i64(value, len, &p->updated_at);
	case SCHEMA_P_DYNREG:
		p->dynreg = SCHEMA_DYNREG_OFF;
		for (int i = 1; i < 3; i++)
			if (len == strlen(schema_dynreg_names[i]) && memcmp(value, schema_dynreg_names[i], len) == 0)
				p->dynreg = (enum schema_dynreg)i;
		return 0;
	case SCHEMA_P_PREAUTH:
		p->pre_auth = len == 1 && value[0] == '1';
		return 0;
	case SCHEMA_P_NFIELDS:
		break;
	}
	return -1;
}

int schema_targets_parse(const char *s, size_t len, struct schema_batch *out)
{
	const char *f[SCHEMA_TARGETS_MAX + 1];
	size_t fl[SCHEMA_TARGETS_MAX + 1];
	size_t n = schema_split(s, len, ',', f, fl, SCHEMA_TARGETS_MAX + 1);

	if (n == 0 || n > SCHEMA_TARGETS_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *slash = memchr(f[i], '/', fl[i]);
		size_t rl;

		if (slash == NULL)
			return -1;
		rl = (size_t)(slash - f[i]);
		if (rl == 0 || rl + 1 == fl[i] || !schema_is_id(f[i], rl, false) ||
		    !schema_is_id(slash + 1, fl[i] - rl - 1, true))
			return -1;
		if (schema_copy(out->targets[i].region, sizeof(out->targets[i].region), f[i], rl) < 0 ||
		    schema_copy(out->targets[i].instance, sizeof(out->targets[i].instance), slash + 1,
			    fl[i] - rl - 1) < 0)
			return -1;
	}
	out->ntargets = n;
	return 0;
}

int schema_targets_format(const struct schema_batch *b, char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return -1;
	buf[0] = '\0';
	for (size_t i = 0; i < b->ntargets; i++) {
		int n = snprintf(buf + off, len - off, "%s%s/%s", i ? "," : "", b->targets[i].region,
			b->targets[i].instance);
		if (n < 0 || (size_t)n >= len - off)
			return -1;
		off += (size_t)n;
	}
	return (int)off;
}
