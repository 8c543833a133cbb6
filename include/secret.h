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

/* 1 if the hex strings A and B are equal ignoring case, else 0. Constant time
 * for equal lengths; strings of different length, empty, NULL or holding a
 * non-hex character are never equal. */
int secret_hex_equal(const char *a, const char *b) __attribute__((warn_unused_result));

#endif
