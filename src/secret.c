#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"

#define SECRET_KEY_LEN 32
#define SECRET_KEY_HEX_LEN (2 * SECRET_KEY_LEN)
#define SECRET_VERSION 0x01
#define SECRET_NONCE_LEN 12
#define SECRET_TAG_LEN 16

struct secret_key {
	unsigned char key[SECRET_KEY_LEN];
};

static const char secret_hexdigits[] = "0123456789abcdef";

static void secret_to_hex(const unsigned char *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = secret_hexdigits[in[i] >> 4];
		out[2 * i + 1] = secret_hexdigits[in[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

static int secret_nibble(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void secret_cause(char **cause, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void secret_cause(char **cause, const char *fmt, ...)
{
	va_list ap;

	if (cause == NULL)
		return;
	va_start(ap, fmt);
	if (vasprintf(cause, fmt, ap) < 0)
		*cause = NULL;
	va_end(ap);
}

int secret_generate(char out[SECRET_HEX_LEN + 1])
{
	unsigned char raw[SECRET_HEX_LEN / 2];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	secret_to_hex(raw, sizeof(raw), out);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

/* Makes PATH with a fresh key. Returns 0, 1 if PATH appeared meanwhile (the
 * caller then loads it), or -1 with *cause. */
static int secret_key_create(const char *path, struct secret_key *key, char **cause)
{
	char line[SECRET_KEY_HEX_LEN + 2];
	size_t done = 0;
	int fd = -1;
	int rc = -1;

	if (RAND_bytes(key->key, sizeof(key->key)) != 1) {
		secret_cause(cause, "%s: cannot make a key: RAND_bytes failed", path);
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return 1;
		secret_cause(cause, "%s: cannot create: %s", path, strerror(errno));
		return -1;
	}
	secret_to_hex(key->key, sizeof(key->key), line);
	line[SECRET_KEY_HEX_LEN] = '\n';
	while (done < sizeof(line) - 1) {
		ssize_t n = write(fd, line + done, sizeof(line) - 1 - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			secret_cause(cause, "%s: cannot write: %s", path,
				n < 0 ? strerror(errno) : "short write");
			goto out;
		}
		done += (size_t)n;
	}
	if (fsync(fd) != 0) {
		secret_cause(cause, "%s: cannot sync: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(line, sizeof(line));
	if (close(fd) != 0 && rc == 0) {
		secret_cause(cause, "%s: cannot close: %s", path, strerror(errno));
		rc = -1;
	}
	if (rc != 0)
		unlink(path);
	return rc;
}

/* Reads and checks the key file at PATH. Returns 0, or -1 with *cause; with
 * ENOENT left in errno when PATH does not exist. */
static int secret_key_read(const char *path, struct secret_key *key, char **cause)
{
	char buf[SECRET_KEY_HEX_LEN + 8];
	size_t len = 0;
	struct stat st;
	int fd;
	int rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		secret_cause(cause, "%s: cannot open: %s", path, strerror(err));
		errno = err;
		return -1;
	}
	if (fstat(fd, &st) != 0) {
		secret_cause(cause, "%s: cannot stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		secret_cause(cause, "%s: not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		secret_cause(cause, "%s: mode %04o lets group or others access the key (chmod 600)",
			path, (unsigned int)(st.st_mode & 07777));
		goto out;
	}
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			secret_cause(cause, "%s: cannot read: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	/* One line: 64 hex digits, then an optional line end. */
	if (len < SECRET_KEY_HEX_LEN) {
		secret_cause(cause, "%s: too short: want one line of %d hex digits", path,
			SECRET_KEY_HEX_LEN);
		goto out;
	}
	if (!(len == SECRET_KEY_HEX_LEN ||
		    (len == SECRET_KEY_HEX_LEN + 1 && buf[SECRET_KEY_HEX_LEN] == '\n') ||
		    (len == SECRET_KEY_HEX_LEN + 2 && buf[SECRET_KEY_HEX_LEN] == '\r' &&
			buf[SECRET_KEY_HEX_LEN + 1] == '\n'))) {
		secret_cause(cause, "%s: trailing data: want one line of %d hex digits", path,
			SECRET_KEY_HEX_LEN);
		goto out;
	}
	for (size_t i = 0; i < SECRET_KEY_LEN; i++) {
		int hi = secret_nibble((unsigned char)buf[2 * i]);
		int lo = secret_nibble((unsigned char)buf[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			secret_cause(cause, "%s: not hex: want one line of %d hex digits", path,
				SECRET_KEY_HEX_LEN);
			goto out;
		}
		key->key[i] = (unsigned char)(hi << 4 | lo);
	}
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	errno = 0;
	return rc;
}

int secret_key_load(const char *path, bool create, struct secret_key **out, char **cause)
{
	struct secret_key *key;
	int rc = -1;

	*out = NULL;
	if (cause != NULL)
		*cause = NULL;
	key = calloc(1, sizeof(*key));
	if (key == NULL) {
		secret_cause(cause, "%s: out of memory", path);
		return -1;
	}
	if (secret_key_read(path, key, cause) == 0) {
		rc = 0;
		goto out;
	}
	if (!create || errno != ENOENT)
		goto out;
	if (cause != NULL) {
		free(*cause);
		*cause = NULL;
	}
	rc = secret_key_create(path, key, cause);
	if (rc == 0)
		log_warn("secret", "%s did not exist: a new key was made there. Every process of this deployment "
			"must use the same file, and it must be backed up with Redis (docs/runbook.md)", path);
	else if (rc == 1)
		rc = secret_key_read(path, key, cause);
out:
	if (rc != 0) {
		secret_key_free(key);
		return -1;
	}
	*out = key;
	return 0;
}

void secret_key_free(struct secret_key *key)
{
	if (key == NULL)
		return;
	OPENSSL_cleanse(key, sizeof(*key));
	free(key);
}

int secret_seal(const struct secret_key *key, const char *aad, const char *plain, size_t plen,
	unsigned char *out, size_t outlen)
{
	EVP_CIPHER_CTX *ctx = NULL;
	unsigned char *nonce = out + 1;
	unsigned char *ct = out + 1 + SECRET_NONCE_LEN;
	size_t aadlen;
	int n, fin;
	int rc = -1;

	if (key == NULL || aad == NULL || (plain == NULL && plen > 0) || out == NULL)
		return -1;
	aadlen = strlen(aad);
	if (plen > INT_MAX - SECRET_SEALED_OVERHEAD || aadlen > INT_MAX ||
		outlen < plen + SECRET_SEALED_OVERHEAD)
		return -1;
	out[0] = SECRET_VERSION;
	if (RAND_bytes(nonce, SECRET_NONCE_LEN) != 1)
		return -1;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return -1;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_LEN, NULL) != 1 ||
		EVP_EncryptInit_ex(ctx, NULL, NULL, key->key, nonce) != 1)
		goto out;
	if (EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)aadlen) != 1)
		goto out;
	n = 0;
	if (plen > 0 &&
		EVP_EncryptUpdate(ctx, ct, &n, (const unsigned char *)plain, (int)plen) != 1)
		goto out;
	if (EVP_EncryptFinal_ex(ctx, ct + n, &fin) != 1 || (size_t)(n + fin) != plen)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_LEN, ct + plen) != 1)
		goto out;
	rc = (int)(plen + SECRET_SEALED_OVERHEAD);
out:
	EVP_CIPHER_CTX_free(ctx);
	if (rc < 0)
		OPENSSL_cleanse(out, plen + SECRET_SEALED_OVERHEAD);
	return rc;
}

int secret_open(const struct secret_key *key, const char *aad, const unsigned char *sealed,
	size_t slen, char *out, size_t outlen)
{
	EVP_CIPHER_CTX *ctx = NULL;
	const unsigned char *nonce, *ct, *tag;
	size_t clen, aadlen;
	int n, fin;
	int rc = -1;

	if (key == NULL || aad == NULL || sealed == NULL || out == NULL || outlen == 0)
		return -1;
	out[0] = '\0';
	aadlen = strlen(aad);
	if (slen < SECRET_SEALED_OVERHEAD || slen > INT_MAX || aadlen > INT_MAX ||
		sealed[0] != SECRET_VERSION)
		return -1;
	clen = slen - SECRET_SEALED_OVERHEAD;
	if (outlen < clen + 1)
		return -1;
	nonce = sealed + 1;
	ct = nonce + SECRET_NONCE_LEN;
	tag = ct + clen;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return -1;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_LEN, NULL) != 1 ||
		EVP_DecryptInit_ex(ctx, NULL, NULL, key->key, nonce) != 1)
		goto out;
	if (EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)aad, (int)aadlen) != 1)
		goto out;
	n = 0;
	if (clen > 0 &&
		EVP_DecryptUpdate(ctx, (unsigned char *)out, &n, ct, (int)clen) != 1)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SECRET_TAG_LEN, (void *)tag) != 1)
		goto out;
	/* The tag is checked here; until then OUT holds unauthenticated bytes. */
	if (EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &fin) != 1 ||
		(size_t)(n + fin) != clen)
		goto out;
	out[clen] = '\0';
	rc = (int)clen;
out:
	EVP_CIPHER_CTX_free(ctx);
	if (rc < 0)
		OPENSSL_cleanse(out, clen + 1);
	return rc;
}

int secret_hmac_hex(const char *method, const char *key, const char *msg, size_t msglen,
	char *out, size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	const char *digest;
	size_t maclen = 0;
	int rc = -1;

	if (key == NULL || (msg == NULL && msglen > 0) || out == NULL)
		return -1;
	if (method == NULL || strcasecmp(method, "hmacmd5") == 0)
		digest = "MD5";
	else if (strcasecmp(method, "hmacsha1") == 0)
		digest = "SHA1";
	else if (strcasecmp(method, "hmacsha256") == 0)
		digest = "SHA256";
	else
		return -1;
	if (EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, key, strlen(key),
		    (const unsigned char *)(msg != NULL ? msg : ""), msglen, mac, sizeof(mac),
		    &maclen) == NULL)
		goto out;
	if (outlen < 2 * maclen + 1)
		goto out;
	secret_to_hex(mac, maclen, out);
	rc = (int)(2 * maclen);
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

/* A hex digit's value without branching on it; sets *bad for a non-digit. */
static unsigned int secret_ct_nibble(unsigned char c, unsigned int *bad)
{
	int digit = (int)c - '0';
	int alpha = (int)(c | 0x20) - 'a';
	unsigned int is_digit = (unsigned int)((digit >= 0) & (digit <= 9));
	unsigned int is_alpha = (unsigned int)((alpha >= 0) & (alpha <= 5));

	*bad |= 1u ^ (is_digit | is_alpha);
	return ((0u - is_digit) & (unsigned int)digit) |
		((0u - is_alpha) & (unsigned int)(alpha + 10));
}

int secret_hex_equal(const char *a, const char *b)
{
	unsigned int diff = 0, bad = 0;
	size_t len;

	if (a == NULL || b == NULL)
		return 0;
	len = strlen(a);
	if (len == 0 || len != strlen(b))
		return 0;
	for (size_t i = 0; i < len; i++) {
		diff |= secret_ct_nibble((unsigned char)a[i], &bad) ^
			secret_ct_nibble((unsigned char)b[i], &bad);
	}
	return (diff | bad) == 0;
}

int secret_generate_psk(char out[SECRET_PSK_LEN + 1])
{
	unsigned char raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	return SECRET_PSK_LEN;
}

int secret_tc_sign(const char *key, const char *msg, size_t msglen, char *out, size_t outlen)
{
	char hex[41];
	int rc = -1;

	if (outlen < SECRET_TC_SIGN_LEN + 1 || secret_hmac_hex("hmacsha1", key, msg, msglen, hex, sizeof(hex)) != 40)
		goto out;
	/* The SDK signs the hex text, not the digest's bytes. */
	rc = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)hex, 40);
out:
	OPENSSL_cleanse(hex, sizeof(hex));
	return rc;
}

int secret_tc_payload(const char *key, const char *plain, size_t plen, char *out, size_t outlen)
{
	unsigned char iv[16], k[16], *buf = NULL, *enc = NULL;
	size_t padded = (plen / 16 + 1) * 16;
	EVP_CIPHER_CTX *ctx = NULL;
	int n = 0, fin = 0, rc = -1;

	if (key == NULL || strlen(key) < 16 || outlen < 4 * ((padded + 2) / 3) + 1 || padded > INT_MAX)
		return -1;
	memcpy(k, key, 16);
	memset(iv, '0', sizeof(iv));
	/* Zero padding, 1 to 16 bytes, as the SDK's own encryption pads. */
	if ((buf = calloc(1, padded)) == NULL || (enc = malloc(padded + 16)) == NULL ||
	    (ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	memcpy(buf, plain, plen);
	if (EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, k, iv) != 1 || EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
	    EVP_EncryptUpdate(ctx, enc, &n, buf, (int)padded) != 1 || EVP_EncryptFinal_ex(ctx, enc + n, &fin) != 1 ||
	    (size_t)(n + fin) != padded)
		goto out;
	rc = EVP_EncodeBlock((unsigned char *)out, enc, (int)padded);
out:
	EVP_CIPHER_CTX_free(ctx);
	if (buf)
		OPENSSL_cleanse(buf, padded);
	free(buf);
	free(enc);
	OPENSSL_cleanse(k, sizeof(k));
	return rc;
}

int secret_str_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

int secret_derive_hex(const struct secret_key *key, const char *label, const char *msg, size_t nhex, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	size_t maclen = 0, ll = strlen(label), ml = strlen(msg);
	unsigned char *buf;
	int rc = -1;

	if (nhex > 64 || (buf = malloc(ll + 1 + ml)) == NULL)
		return -1;
	memcpy(buf, label, ll);
	buf[ll] = '\0';
	memcpy(buf + ll + 1, msg, ml);
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->key, sizeof(key->key), buf, ll + 1 + ml, mac,
		    sizeof(mac), &maclen) != NULL && maclen == 32) {
		secret_to_hex(mac, maclen, hex);
		memcpy(out, hex, nhex);
		out[nhex] = '\0';
		rc = 0;
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(hex, sizeof(hex));
	free(buf);
	return rc;
}

int secret_sha256_hex(const char *s, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	if (EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -1;
	secret_to_hex(md, 32, out);
	return 0;
}
