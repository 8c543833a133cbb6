/* form: the device bootstrap request's parameters, from the query string and
 * an application/x-www-form-urlencoded body, split and decoded in place in the
 * caller's buffers (liburiparser decodes), and validated. Pure; allocates
 * nothing. */
#ifndef BOOTSTRAPD_FORM_H
#define BOOTSTRAPD_FORM_H

#include <stddef.h>

#define FORM_PARAMS_MAX 32 /* query and body together */
#define FORM_RESOURCES_MAX 8
#define FORM_RESOURCE_NAME_MAX 16
#define FORM_CLIENT_ID_MAX 128  /* SPEC §4; the SDKs send {productKey}.{deviceName} */
#define FORM_PRODUCT_KEY_MAX 32 /* [A-Za-z0-9_-] */
#define FORM_DEVICE_NAME_MIN 4
#define FORM_DEVICE_NAME_MAX 32 /* [A-Za-z0-9_.@:-] */
#define FORM_TEXT_MAX 64        /* version, timestamp */
#define FORM_SIGN_MAX 128       /* hex digits */
#define FORM_BODY_MAX (64 * 1024)

/* One name=value pair, pointing into the buffer it was parsed from. The name
 * is the bytes as sent (never decoded) and is not NUL-terminated; the value is
 * decoded ('+' is a space, %XX a byte) and NUL-terminated, and holds no NUL. */
struct form_param {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

struct form_request {
	/* Every parameter, the body's first, then the query's, in request order. */
	struct form_param params[FORM_PARAMS_MAX];
	size_t nparams;
	const char *product_key;
	const char *device_name;
	const char *client_id;  /* NULL when absent */
	const char *version;    /* NULL when absent */
	const char *timestamp;  /* NULL when absent */
	const char *sign;       /* NULL when absent */
	const char *signmethod; /* NULL when absent; validated, lower case, static */
	/* Requested protocols, lower case, deduplicated, request order;
	 * "mqtt" alone when the parameter is absent or empty. */
	char resources[FORM_RESOURCES_MAX][FORM_RESOURCE_NAME_MAX + 1];
	size_t nresources;
};

/* Splits BUF (LEN bytes, not NUL-terminated, NULL when LEN is 0) into
 * name=value pairs separated by '&' and decodes each value in place, writing
 * only inside those LEN bytes. Fills OUT[0..*N). Returns 0, or -1 with *why
 * "bad encoding" (a raw NUL, a '%' that starts no %XX escape, "%00", a pair
 * without '=' or with an empty name; one trailing '&' is allowed) or "too many
 * parameters" (more than MAX). BUF's bytes are meaningless after a failure. */
int form_query_parse(char *buf, size_t len, struct form_param *out, size_t max, size_t *n,
	const char **why) __attribute__((warn_unused_result));

/* The first of PARAMS[0..N) named NAME (case matters), NULL if none. */
const struct form_param *form_param_find(const struct form_param *params, size_t n, const char *name);

/* Parses QUERY (NULL when absent) and BODY (NULL when absent), QUERY_LEN and
 * BODY_LEN bytes, neither NUL-terminated, decoding both in place as
 * form_query_parse does; a parameter present in both is taken from the body.
 * On success REQ points into both buffers, which must outlive it unchanged.
 * Returns 0, or -1 with *why set to a static message for the device (bad
 * encoding, missing, empty or over-long parameter, too many parameters). */
int form_parse(struct form_request *req, char *query, size_t query_len, char *body, size_t body_len,
	const char **why) __attribute__((warn_unused_result));
/* Details of form_parse: names match case-sensitively and the first occurrence
 * wins (body before query); unknown names are ignored. Every value must be
 * strict UTF-8 without control characters, and every '%' must start a %XX
 * escape ("%00" is refused), else "bad encoding". Limits are in bytes. An
 * optional parameter with an empty value counts as absent. On failure the
 * pointers in REQ are meaningless. REQ need not be initialised before. */

/* Zeroes REQ (it owns nothing). Accepts NULL. */
void form_request_clear(struct form_request *req);

/* The signed content of SPEC §8 into OUT (CAP bytes, not NUL-terminated):
 * every parameter of REQ but those named in SKIP[0..NSKIP), sorted by name
 * (bytewise), the first occurrence of a repeated name only, concatenated as
 * name+value. Never longer than the query and body REQ was parsed from
 * together. Returns 0 with *LEN set, or -1 when CAP is too small. */
int form_sign_content(const struct form_request *req, const char *const *skip, size_t nskip, char *out,
	size_t cap, size_t *len) __attribute__((warn_unused_result));

/* Validation shared with the admin API; NULL is not valid. */
int form_valid_product_key(const char *s) __attribute__((warn_unused_result)); /* 1 or 0 */
int form_valid_device_name(const char *s) __attribute__((warn_unused_result)); /* 1 or 0 */

#endif
