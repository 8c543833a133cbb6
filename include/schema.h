/* schema: the Redis key schema and the compact records stored in it. Pure.
 * Every key bootstrapd touches is named here (docs/key-schema.md, checked
 * against this file by tests/lint/test_key_schema.py). The part in braces is
 * the Redis Cluster hash tag: what one script touches shares one tag.
 *
 *   bd:{p}:{productKey}     hash    product (hr hi ac lk ba pb ct ut dr pa ps)
 *   bd:{p}                  set     every product key
 *   bd:{p}:{pk}:regs :regn  hash    a product's registration records and their names
 *   bd:{p}:{pk}:rd:{YYYYMMDD}  list the names a day's dynamic registrations gave
 *   bd:{G}:d:{bucket}       hash    field "{productKey}/{deviceName}" -> device record
 *   bd:{G}:s:{bucket}       hash    same field -> sealed secret
 *   bd:{G}:c                hash    the group's counters (devices, active, ...)
 *   bd:{G}:n:{pk}/{dn}:{random}  string  a dynamic registration's random (EX 600)
 *   bd:{G}:a:{iotId}        string  a pre-auth token (SPEC §10; EX its lifetime)
 *   bd:{b}:codes            hash    region and instance codes (codes.h)
 *   bd:{b}:{seq}            hash    batch (st tg ac ct ... pruned)
 *   bd:{b}:{seq}:i :r :n :f list, strings, hash  rows, results, notify states, failures
 *   bd:{b}  bd:{b}:seq  bd:{b}:q  bd:{b}:stats  bd:{b}:ac:{account}:{code}
 *                           the batch index, numbering, steps, counts, codes
 *   bd:o:{broker}           stream  a notify broker's outbox (tag: the broker)
 *   bd:{a}                  stream  the audit log
 *   bd:{h}:subs :seq :e :s:{id}  push subscriptions, their events and states
 *   bd:{s}:act:{YYYYMMDD}   hash    activations per 5 minutes of a day
 *
 * Devices are spread over SCHEMA_BUCKETS hashes so that each stays small enough
 * for Redis' compact listpack encoding (docs/key-schema.md has the figures);
 * the buckets fall in SCHEMA_GROUPS groups G, each one hash tag, so that a
 * script can update a device together with its group's counters. A device's
 * notify state is part of its record. */
#ifndef BOOTSTRAPD_SCHEMA_H
#define BOOTSTRAPD_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "catalog.h"

#define SCHEMA_BATCHES_KEY "bd:{b}"             /* zset of every batch's seq */
#define SCHEMA_BATCH_SEQ_KEY "bd:{b}:seq"        /* the last batch seq (INCR) */
#define SCHEMA_STEPS_KEY "bd:{b}:q"              /* stream of batch steps for the workers */
#define SCHEMA_STATS_BATCHES_KEY "bd:{b}:stats"  /* batches per status */
#define SCHEMA_PRODUCTS_KEY "bd:{p}"             /* set of product keys */
#define SCHEMA_AUDIT_KEY "bd:{a}"                /* stream: the audit log (audit.h) */
/* Push subscriptions (hooks.h): their definitions, numbering, the events
 * waiting (a stream, a consumer group "s{id}" each), and each one's state
 * "bd:{h}:s:{id}". */
#define SCHEMA_SUBS_KEY "bd:{h}:subs"
#define SCHEMA_SUBS_SEQ_KEY "bd:{h}:seq"
#define SCHEMA_EVENTS_KEY "bd:{h}:e"
/* Activations through bootstrap per SCHEMA_ACTIVATIONS_SLOT_S, a hash a UTC
 * day "bd:{s}:act:{YYYYMMDD}", field the slot of the day (0..287), kept
 * SCHEMA_ACTIVATIONS_KEEP_S. */
#define SCHEMA_ACTIVATIONS_SLOT_S 300
#define SCHEMA_ACTIVATIONS_KEEP_S (400 * 86400)
/* The layout every key and record here follows; a store holding another is
 * not served (/readyz says so, the worker waits). Raised with any change of
 * a key or of a record's format. */
#define SCHEMA_VERSION "5"
#define SCHEMA_VERSION_KEY "bd:{b}:schema"       /* hash: version */
#define SCHEMA_CODES_KEY "bd:{b}:codes"          /* hash: "r:<region>" / "i:<instance>" -> code (codes.h) */
/* A region's or instance's code: base 36, no leading zero, 1 to this many. */
#define SCHEMA_CODE_MAX 7
/* Not a key: each tracking connection's liveness channel is this and its client id. */
#define SCHEMA_SYNC_CHANNEL_PREFIX "bd:sync:"
/* A group's counters: these fields, and SCHEMA_REGION_FIELD_PREFIX{region}
 * for the devices distributed to each region. */
#define SCHEMA_C_DEVICES "devices"
#define SCHEMA_C_ACTIVE "active"
#define SCHEMA_C_ACTIVATIONS "activations"
#define SCHEMA_REGION_FIELD_PREFIX "r:"
#define SCHEMA_BUCKET_BITS 20
#define SCHEMA_GROUP_BITS 10
#define SCHEMA_GROUPS (1u << SCHEMA_GROUP_BITS)
#define SCHEMA_KEY_MAX 96
#define SCHEMA_FIELD_MAX (CATALOG_PRODUCT_KEY_MAX + 1 + CATALOG_DEVICE_NAME_MAX + 1)
#define SCHEMA_DEVICE_RECORD_MAX 192
#define SCHEMA_ACCOUNT_MAX 64

enum schema_status { SCHEMA_INACTIVE = 'i', SCHEMA_ACTIVE = 'a' };

/* A product's dynamic registration (SPEC §9), as "dr" holds it (absent: off). */
enum schema_dynreg { SCHEMA_DYNREG_OFF = 0, SCHEMA_DYNREG_PREREGISTERED, SCHEMA_DYNREG_OPEN };
extern const char *const schema_dynreg_names[3]; /* "off", "preregistered", "open" */
/* The product hash's sealed product secret (binary; never in struct schema_product). */
#define SCHEMA_PRODUCT_SECRET_FIELD "ps"
/* A dynamic registration's random is refused again for this long (SPEC §9). */
#define SCHEMA_DYNREG_RANDOM_TTL_S 600
#define SCHEMA_DYNREG_RANDOM_MAX 64

#define SCHEMA_NOTIFY_STATE_MAX 7 /* pending, sent, acked, none */

struct schema_device {
	uint64_t batch;            /* device-level assignment, 0 = none */
	char status;               /* enum schema_status */
	int64_t registered_at;     /* unix seconds; 0 = never */
	int64_t activated_at;
	int64_t last_bootstrap_at;
	/* The region the last bootstrap resolved to, as its code ("" none). */
	char last_region_code[SCHEMA_CODE_MAX + 1];
	/* The notify of the batch that placed the device (batch): its row
	 * (-1: none), its state (pending, sent, acked, none), and the code of
	 * the instance it went through. */
	long notify_row;
	char notify_state[SCHEMA_NOTIFY_STATE_MAX + 1];
	char notify_instance_code[SCHEMA_CODE_MAX + 1];
};

struct schema_product {
	char home_region[CATALOG_REGION_ID_MAX + 1];
	char home_instance[CATALOG_INSTANCE_ID_MAX + 1];
	char account[SCHEMA_ACCOUNT_MAX + 1];
	bool locked;
	bool auth_required;
	uint64_t batch; /* product-level assignment, 0 = none */
	int64_t created_at, updated_at;
	enum schema_dynreg dynreg;
	bool pre_auth; /* SPEC §10 */
};

/* The product hash's field names, in the order schema_product_set() takes them. */
enum schema_product_field {
	SCHEMA_P_HOME_REGION, SCHEMA_P_HOME_INSTANCE, SCHEMA_P_ACCOUNT, SCHEMA_P_LOCKED,
	SCHEMA_P_AUTH, SCHEMA_P_BATCH, SCHEMA_P_CREATED, SCHEMA_P_UPDATED, SCHEMA_P_DYNREG, SCHEMA_P_PREAUTH,
	SCHEMA_P_NFIELDS
};
extern const char *const schema_product_fields[SCHEMA_P_NFIELDS];

enum schema_strategy { SCHEMA_REGION = 'r', SCHEMA_NEAREST = 'n' };
#define SCHEMA_TARGETS_MAX 16

struct schema_target {
	char region[CATALOG_REGION_ID_MAX + 1];
	char instance[CATALOG_INSTANCE_ID_MAX + 1];
};

/* A batch's assignment: what bootstrap needs of it. Immutable once written. */
struct schema_batch {
	uint64_t seq;
	char strategy; /* enum schema_strategy */
	struct schema_target targets[SCHEMA_TARGETS_MAX];
	size_t ntargets;
	char account[SCHEMA_ACCOUNT_MAX + 1];
	int64_t created_at;
};

/* FNV-1a 32-bit of "{productKey}/{deviceName}", masked to SCHEMA_BUCKET_BITS. */
uint32_t schema_bucket(const char *product_key, const char *device_name);
/* The group of a bucket: its top SCHEMA_GROUP_BITS bits. */
static inline uint32_t schema_group(uint32_t bucket)
{
	return bucket >> (SCHEMA_BUCKET_BITS - SCHEMA_GROUP_BITS);
}

/* Key and field builders. Each returns the length written (with a NUL), or -1
 * if it does not fit. */
int schema_product_key(char *buf, size_t len, const char *product_key) __attribute__((warn_unused_result));
int schema_device_key(char *buf, size_t len, const char *product_key, const char *device_name)
	__attribute__((warn_unused_result));
int schema_secret_key(char *buf, size_t len, const char *product_key, const char *device_name)
	__attribute__((warn_unused_result));
int schema_device_field(char *buf, size_t len, const char *product_key, const char *device_name)
	__attribute__((warn_unused_result));
/* A bucket's keys by its number: PART 'd' records, 's' secrets. */
int schema_bucket_key(char *buf, size_t len, char part, uint32_t bucket) __attribute__((warn_unused_result));
/* A group's counters "bd:{G}:c". */
int schema_counters_key(char *buf, size_t len, uint32_t group) __attribute__((warn_unused_result));
int schema_batch_key(char *buf, size_t len, uint64_t seq) __attribute__((warn_unused_result));
/* HTTPS authentication before MQTT (SPEC §10): a device's iotId is its
 * group (3 hex digits) and 29 more hex digits; its token's record, under
 * the iotId's key, is "{expires};{sha256 hex of the token};{pk}/{dn}". */
#define SCHEMA_IOT_ID_LEN 32
#define SCHEMA_PREAUTH_TTL_S (7 * 24 * 3600)
struct schema_preauth {
	int64_t expires; /* unix seconds */
	char token_sha256[65];
	char field[SCHEMA_FIELD_MAX]; /* "{productKey}/{deviceName}" */
};
/* A device's iotId (SCHEMA_IOT_ID_LEN + 1 bytes) from its group and
 * DERIVED (29 hex digits only this service makes, secret_derive_hex). */
int schema_iot_id(char *out, const char *product_key, const char *device_name, const char *derived)
	__attribute__((warn_unused_result));
/* The iotId's key; -1 when IOT_ID is not one (32 lower-case hex, a group first). */
int schema_preauth_key(char *buf, size_t len, const char *iot_id) __attribute__((warn_unused_result));
int schema_preauth_format(const struct schema_preauth *p, char *buf, size_t len) __attribute__((warn_unused_result));
int schema_preauth_parse(const char *s, size_t len, struct schema_preauth *out) __attribute__((warn_unused_result));

/* A product's registration records (PART 'm': id -> "method;count;ct;actor"),
 * their names (PART 'n': id -> names), or (PART 'd') the list of names of the
 * dynamic registrations of the UTC day holding T ("d{YYYYMMDD}" the record's id). */
int schema_registrations_key(char *buf, size_t len, const char *product_key, char part, int64_t t)
	__attribute__((warn_unused_result));

/* A subscription's state hash "bd:{h}:s:{id}". */
int schema_sub_state_key(char *buf, size_t len, uint64_t id) __attribute__((warn_unused_result));

/* The activations key of the UTC day holding T (unix seconds), and T's slot in it. */
int schema_activations_key(char *buf, size_t len, int64_t t, unsigned *slot) __attribute__((warn_unused_result));

/* A dynamic registration's RANDOM for a device: in the device's group. */
int schema_dynreg_random_key(char *buf, size_t len, const char *product_key, const char *device_name,
	const char *random) __attribute__((warn_unused_result));
/* A live cross-account authorization code. */
int schema_auth_code_key(char *buf, size_t len, const char *account, const char *code)
	__attribute__((warn_unused_result));
/* A notify broker's outbox stream. */
int schema_outbox_key(char *buf, size_t len, const char *broker) __attribute__((warn_unused_result));
/* A batch's rows ('i'), results ('r'), notify states ('n') or failures ('f'). */
int schema_batch_part_key(char *buf, size_t len, uint64_t seq, char part) __attribute__((warn_unused_result));

/* A key by its kind, for tools and tests (`bootstrapd --key KIND ARG...`):
 * product PK; device, secret, counters PK DN; batch, rows, results,
 * notifies, failures SEQ; outbox BROKER; and the fixed ones batches, batch-seq, steps,
 * batch-counters, products, schema, codes. -1 for an unknown kind or wrong arguments. */
int schema_key_named(char *buf, size_t len, const char *kind, const char *const *args, size_t nargs)
	__attribute__((warn_unused_result));

/* Device record "batch;status;registeredAt;activatedAt;lastBootstrapAt;lastRegion;notify"
 * with the times in base 36, the region a code, and notify empty or
 * "row:s:instance" (s the state's first letter, the instance a code)
 * (docs/key-schema.md). */
int schema_device_parse(const char *s, size_t len, struct schema_device *out) __attribute__((warn_unused_result));
int schema_device_format(const struct schema_device *d, char *buf, size_t len) __attribute__((warn_unused_result));

/* Sets one product field from its stored string (VALUE may be NULL: absent). */
int schema_product_set(struct schema_product *p, enum schema_product_field f, const char *value, size_t len)
	__attribute__((warn_unused_result));

/* Batch target "region/instance" or "r1/i1,r2/i2" (nearest). */
int schema_targets_parse(const char *s, size_t len, struct schema_batch *out) __attribute__((warn_unused_result));
int schema_targets_format(const struct schema_batch *b, char *buf, size_t len) __attribute__((warn_unused_result));

/* A code as the codes table holds it (SCHEMA_CODE_MAX above). */
bool schema_valid_code(const char *s, size_t len);

/* An account name: 1 to SCHEMA_ACCOUNT_MAX of A-Z a-z 0-9 - _ . */
bool schema_valid_account(const char *s);

/* A time (unix seconds, >= 0) as a device record stores it: base 36, lower
 * case, into OUT (at least 14 bytes). Returns its length. */
int schema_time_format(int64_t t, char *out, size_t len) __attribute__((warn_unused_result));

/* Strict decimal parsers for stored numbers. */
int schema_parse_u64(const char *s, size_t len, uint64_t *out) __attribute__((warn_unused_result));
int schema_parse_i64(const char *s, size_t len, int64_t *out) __attribute__((warn_unused_result));

#endif
