/* form: the device bootstrap request's parameters, from the query string and
 * an application/x-www-form-urlencoded body, decoded and validated. Pure. */
#ifndef BOOTSTRAPD_FORM_H
#define BOOTSTRAPD_FORM_H

#include <stddef.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>

#define FORM_RESOURCES_MAX 8
#define FORM_RESOURCE_NAME_MAX 16
#define FORM_CLIENT_ID_MAX 64
#define FORM_PRODUCT_KEY_MAX 32 /* [A-Za-z0-9_-] */
#define FORM_DEVICE_NAME_MIN 4
#define FORM_DEVICE_NAME_MAX 32 /* [A-Za-z0-9_.@:-] */
#define FORM_TEXT_MAX 64        /* version, timestamp */
#define FORM_SIGN_MAX 128       /* hex digits */
#define FORM_BODY_MAX (64 * 1024)

struct form_request {
	struct evkeyvalq params; /* owns every decoded string below */
	const char *product_key;
	const char *device_name;
	const char *client_id;  /* NULL when absent */
	const char *version;    /* NULL when absent */
	const char *timestamp;  /* NULL when absent */
	const char *sign;       /* NULL when absent */
	const char *signmethod; /* NULL when absent; validated, lower case */
	/* Requested protocols, lower case, deduplicated, request order;
	 * "mqtt" alone when the parameter is absent or empty. */
	char resources[FORM_RESOURCES_MAX][FORM_RESOURCE_NAME_MAX + 1];
	size_t nresources;
};

/* Parses QUERY (may be NULL) and BODY (may be NULL; not NUL-terminated) into
 * REQ. A parameter present in both is taken from the body. Returns 0, or -1
 * with *why set to a static message for the device (bad encoding, missing,
 * empty or over-long parameter). REQ must be released with form_request_clear
 * in both cases. */
int form_parse(struct form_request *req, const char *query, const char *body, size_t body_len,
	const char **why) __attribute__((warn_unused_result));
/* Details of form_parse: names match case-sensitively and the first occurrence
 * wins (body before query); unknown names are ignored. Every value must be
 * strict UTF-8 without control characters, and every '%' must start a %XX
 * escape ("%00" is refused), else "bad encoding". Limits are in bytes. An
 * optional parameter with an empty value counts as absent. On failure the
 * pointers in REQ are meaningless; only form_request_clear may follow. REQ
 * need not be initialised before, but must not hold a previous parse. */

/* Frees what REQ owns and zeroes it. Accepts NULL, a zeroed struct, and a
 * struct after a failed form_parse. */
void form_request_clear(struct form_request *req);

/* Validation shared with the admin API; NULL is not valid. */
int form_valid_product_key(const char *s) __attribute__((warn_unused_result)); /* 1 or 0 */
int form_valid_device_name(const char *s) __attribute__((warn_unused_result)); /* 1 or 0 */

#endif
