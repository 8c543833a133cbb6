/* codes: the stable short codes that device records hold instead of region
 * and instance ids (docs/key-schema.md, "Codes"). The store keeps the one
 * table (SCHEMA_CODES_KEY, field "r:<region>" or "i:<instance>" -> code);
 * each event loop keeps a copy, read whole and given new codes by
 * codes_sync(). A code once given is never changed or given again, so a
 * catalog reload (which reorders, adds or removes regions) changes no
 * record. Not thread-safe: one per event loop. */
#ifndef BOOTSTRAPD_CODES_H
#define BOOTSTRAPD_CODES_H

#include <stdbool.h>
#include <stddef.h>
#include <hiredis/hiredis.h>

struct store;

enum codes_kind { CODES_REGION = 'r', CODES_INSTANCE = 'i' };

struct codes;

/* An empty table, synced through ST (borrowed; must outlive the table).
 * NULL when out of memory. */
struct codes *codes_new(struct store *st, int timeout_ms);
void codes_free(struct codes *c);

/* The code of ID (borrowed until the next sync), or NULL when it has none here. */
const char *codes_code(const struct codes *c, enum codes_kind kind, const char *id);
/* The id CODE stands for (borrowed until the next sync), NULL when unknown here. */
const char *codes_id(const struct codes *c, enum codes_kind kind, const char *code, size_t len);

/* Replaces the table by REPLY, the store's table as HGETALL answers it
 * (flat field, code pairs; other fields ignored). -1 when it is not one
 * (the table stays). Pure: the unit tests drive it. */
int codes_load(struct codes *c, const redisReply *reply) __attribute__((warn_unused_result));

/* NEED: the ids to be given a code if they have none ("r:<id>", "i:<id>",
 * NNEED of them, copied). Gives them codes in the store (a durable write),
 * reads the whole table, and calls FN(OK, ARG): OK false when the store did
 * not answer (the table stays). Returns 0 when FN will be called, -1 (FN not
 * called) when nothing could be sent. */
typedef void (*codes_done_fn)(bool ok, void *arg);
int codes_sync(struct codes *c, const char *const *need, size_t nneed, codes_done_fn fn, void *arg)
	__attribute__((warn_unused_result));

/* The field of ID in the store's table into BUF ("r:<id>"): its length, -1
 * when it does not fit. */
int codes_field(char *buf, size_t len, enum codes_kind kind, const char *id) __attribute__((warn_unused_result));

#endif
