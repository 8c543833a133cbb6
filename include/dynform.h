/* dynform: the bodies of dynamic registration requests that are not a form
 * (SPEC §9): the Tencent IoT Explorer SDK's JSON, as its dynreg.c writes it,
 * {"deviceName":..,"nonce":N,"productId":..,"timestamp":N,"signature":..}.
 * Pure. */
#ifndef BOOTSTRAPD_DYNFORM_H
#define BOOTSTRAPD_DYNFORM_H

#include <stddef.h>

#include "catalog.h"

#define DYNFORM_NUMBER_MAX 20    /* an integer as sent, sign included */
#define DYNFORM_SIGNATURE_MAX 64 /* the SDK's buffer; its signatures are 56 */

struct dynform_tencent {
	char product_id[CATALOG_PRODUCT_KEY_MAX + 1];
	char device_name[CATALOG_DEVICE_NAME_MAX + 1];
	char nonce[DYNFORM_NUMBER_MAX + 1];     /* as sent */
	char timestamp[DYNFORM_NUMBER_MAX + 1]; /* as sent */
	char signature[DYNFORM_SIGNATURE_MAX + 1];
};

/* Reads BODY (LEN bytes, a NUL after them): strict JSON, an object with
 * those five members (others ignored), productId and deviceName valid
 * names (form_valid_*), nonce and timestamp integers, signature a
 * string of 1 to DYNFORM_SIGNATURE_MAX characters. Returns 0, or -1 with
 * *WHY a static message for the device. */
int dynform_tencent_parse(const char *body, size_t len, struct dynform_tencent *out, const char **why)
	__attribute__((warn_unused_result));

/* What the signature covers: "deviceName=..&nonce=..&productId=..&timestamp=..".
 * Returns its length, or -1 when LEN is too small. */
int dynform_tencent_content(const struct dynform_tencent *f, char *out, size_t len)
	__attribute__((warn_unused_result));

#endif
