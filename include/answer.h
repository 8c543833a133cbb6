/* answer: the device endpoint's JSON bodies, compact and in the field SDKs'
 * order ("code" first, "mqtt" first, port a bare number). Pure. */
#ifndef BOOTSTRAPD_ANSWER_H
#define BOOTSTRAPD_ANSWER_H

#include <stddef.h>

struct answer_resource {
	const char *protocol;
	const char *host;
	int port;
	const char *ip; /* NULL: not sent */
};

/* Writes {"code":200,"data":{"resources":{...}},"message":"success"} into BUF
 * with the resources in the order given. Returns the length (no NUL counted,
 * but one is written), or -1 if BUF is too small. */
int answer_success(char *buf, size_t len, const struct answer_resource *res, size_t n)
	__attribute__((warn_unused_result));

/* Writes {"code":CODE,"message":"MESSAGE"}. Returns the length or -1. */
int answer_error(char *buf, size_t len, int code, const char *message)
	__attribute__((warn_unused_result));

/* Both return -1 as well when the input cannot be encoded: a NULL string
 * (ip excepted), a port outside 0..65535, or text that is not UTF-8. Strings
 * are JSON-escaped; '/' is not. Nothing is allocated past the call. */

#endif
