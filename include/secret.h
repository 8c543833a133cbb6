/* secret: device secrets. Generation from the CSPRNG, and sealing at rest with
 * AES-256-GCM under the service key, bound to the device by its name. */
#ifndef BOOTSTRAPD_SECRET_H
#define BOOTSTRAPD_SECRET_H

#include <stddef.h>
#include <stdbool.h>

#define SECRET_HEX_LEN 32      /* generated secrets: 32 hex characters */
#define SECRET_PLAIN_MAX 64    /* operator-supplied secrets at most */
#define SECRET_SEALED_OVERHEAD 29 /* version byte + 12 nonce + 16 tag */
#define SECRET_HMAC_HEX_MAX 64 /* hex HMAC-SHA256; MD5 32, SHA1 40 */

struct secret_key;

/* Loads the 32-byte key stored as 64 hex characters (one line) at PATH. When
 * CREATE is true and PATH does not exist, makes a new random key there with
 * mode 0600. On error returns -1 with *cause (caller frees). */
int secret_key_load(const char *path, bool create, struct secret_key **out, char **cause)
	__attribute__((warn_unused_result));
void secret_key_free(struct secret_key *key);

/* Fills OUT with SECRET_HEX_LEN random hex characters and a NUL. */
int secret_generate(char out[SECRET_HEX_LEN + 1]) __attribute__((warn_unused_result));

/* Seals PLAIN (PLEN bytes) bound to AAD (e.g. "productKey/deviceName") into OUT
 * (binary, PLEN + SECRET_SEALED_OVERHEAD bytes). Returns that length or -1. */
int secret_seal(const struct secret_key *key, const char *aad, const char *plain, size_t plen,
	unsigned char *out, size_t outlen) __attribute__((warn_unused_result));
/* Opens what secret_seal made; writes the plain text and a NUL into OUT.
 * Returns its length, or -1 if it was tampered with or belongs elsewhere. */
int secret_open(const struct secret_key *key, const char *aad, const unsigned char *sealed,
	size_t slen, char *out, size_t outlen) __attribute__((warn_unused_result));

/* Hex (lower case) HMAC of MSG (MSGLEN bytes) under KEY (a C string) with
 * METHOD "hmacmd5", "hmacsha1" or "hmacsha256" (any case; NULL means hmacmd5,
 * the default of SPEC §8). Writes it and a NUL into OUT; returns the number
 * of hex characters, or -1 for an unknown method or OUTLEN too small. */
int secret_hmac_hex(const char *method, const char *key, const char *msg, size_t msglen,
	char *out, size_t outlen) __attribute__((warn_unused_result));

/* The Tencent IoT Explorer SDK's dynamic registration (SPEC §9, its
 * dynreg.c): a PSK is base64 of 16 random bytes (24 characters); the
 * request's signature is base64 of the lower-case hex HMAC-SHA1 of MSG under
 * KEY (56 characters); the answer's payload is PLAIN encrypted with
 * AES-128-CBC under the first 16 bytes of KEY, an IV of sixteen ASCII '0',
 * padded with 1 to 16 zero bytes, in base64. Each writes a NUL-terminated
 * string into OUT and returns its length, or -1 (KEY shorter than 16 bytes
 * for the payload, OUTLEN too small). */
#define SECRET_PSK_LEN 24
#define SECRET_TC_SIGN_LEN 56
int secret_generate_psk(char out[SECRET_PSK_LEN + 1]) __attribute__((warn_unused_result));
int secret_tc_sign(const char *key, const char *msg, size_t msglen, char *out, size_t outlen)
	__attribute__((warn_unused_result));
int secret_tc_payload(const char *key, const char *plain, size_t plen, char *out, size_t outlen)
	__attribute__((warn_unused_result));

/* NHEX (at most 64) lower-case hex characters of HMAC-SHA256 under the
 * service key of LABEL, a NUL byte and MSG: a stable name for MSG that only
 * this service can make. Writes them and a NUL into OUT. 0 or -1. */
int secret_derive_hex(const struct secret_key *key, const char *label, const char *msg, size_t nhex, char *out)
	__attribute__((warn_unused_result));

/* SHA-256 of S in lower-case hex (64 characters and a NUL) into OUT. 0 or -1. */
int secret_sha256_hex(const char *s, char out[65]) __attribute__((warn_unused_result));

/* 1 if the strings A and B (NUL-terminated) are equal, in time that depends
 * on their lengths only; 0 otherwise. */
int secret_str_equal(const char *a, const char *b) __attribute__((warn_unused_result));

/* 1 if the hex strings A and B are equal ignoring case, else 0. Constant time
 * for equal lengths; strings of different length, empty, NULL or holding a
 * non-hex character are never equal. */
int secret_hex_equal(const char *a, const char *b) __attribute__((warn_unused_result));

#endif
