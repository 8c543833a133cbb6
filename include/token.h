/* token: admin bearer tokens, configured as "sha256:<hex>" and compared in
 * constant time. Pure. */
#ifndef BOOTSTRAPD_TOKEN_H
#define BOOTSTRAPD_TOKEN_H

#include <stddef.h>
#include <stdbool.h>

struct token_set;

/* HASHES: N strings "sha256:<64 hex>". On error returns -1 with *cause. */
int token_set_new(char *const *hashes, size_t n, struct token_set **out, char **cause)
	__attribute__((warn_unused_result));
void token_set_free(struct token_set *set);

/* True when AUTHORIZATION ("Bearer <token>", may be NULL) names a configured
 * token. Every configured hash is compared, so the time does not say which. */
bool token_set_check(const struct token_set *set, const char *authorization);

#endif
