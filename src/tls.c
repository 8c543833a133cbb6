#include "tls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "proxyproto.h"

/* Forward secrecy and AEAD only. */
static const char tls_modern_ciphers[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/* Static-RSA CBC suites that small device TLS stacks in the field still need. */
static const char tls_legacy_ciphers[] = "AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA";

static void tls_ssl_cause(char **cause, const char *what, const char *file)
{
	char err[256] = "";
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, err, sizeof(err));
	ERR_clear_error();
	if (asprintf(cause, "%s%s%s: %s", what, file ? " " : "", file ? file : "", err[0] ? err : "failed") < 0)
		*cause = NULL;
}

/* The PROXY protocol under TLS: the load balancer's header comes in clear
 * before the ClientHello, so a filter BIO in front of the socket BIO takes it
 * off (proxyproto_conn_read) before OpenSSL reads anything. The connection
 * owns the proxyproto_conn; the BIO only points at it. */
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *tls_proxy_bio_method;
static int tls_hello_index = -1;

static int tls_proxy_next_read(void *arg, unsigned char *buf, int len)
{
	return BIO_read(arg, buf, len);
}

static int tls_proxy_bio_read(BIO *b, char *out, int outl)
{
	struct proxyproto_conn *c = BIO_get_data(b);
	BIO *next = BIO_next(b);
	int n;

	BIO_clear_retry_flags(b);
	if (c == NULL || next == NULL || outl <= 0)
		return outl == 0 ? 0 : -1;
	n = proxyproto_conn_read(c, (unsigned char *)out, outl, tls_proxy_next_read, next);
	/* A malformed header is an error without retry: the handshake fails
	 * quietly (no alert) and the connection is closed. */
	if (n == PROXYPROTO_BAD)
		return -1;
	if (n <= 0)
		BIO_copy_next_retry(b);
	return n;
}

static int tls_proxy_bio_write(BIO *b, const char *in, int inl)
{
	BIO *next = BIO_next(b);
	int n;

	BIO_clear_retry_flags(b);
	if (next == NULL)
		return -1;
	n = BIO_write(next, in, inl);
	BIO_copy_next_retry(b);
	return n;
}

static long tls_proxy_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct proxyproto_conn *c = BIO_get_data(b);
	BIO *next = BIO_next(b);
	long pending = c ? (long)proxyproto_conn_pending(c) : 0;

	switch (cmd) {
	case BIO_CTRL_PENDING:
		return pending + (next ? BIO_ctrl(next, cmd, num, ptr) : 0);
	case BIO_CTRL_EOF:
		/* An end inside the header is a plain close too, not an alert. */
		if (c == NULL || !proxyproto_conn_passing(c) || pending)
			return 0;
		break;
	default:
		break;
	}
	return next ? BIO_ctrl(next, cmd, num, ptr) : 0;
}

static int tls_proxy_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int tls_proxy_bio_destroy(BIO *b)
{
	BIO_set_data(b, NULL);
	BIO_set_init(b, 0);
	return 1;
}

static void tls_hello_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	free(ptr);
}

static void tls_init(void)
{
	int type = BIO_get_new_index() | BIO_TYPE_FILTER;
	BIO_METHOD *m = BIO_meth_new(type, "PROXY protocol");

	tls_hello_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_hello_free);
	if (m == NULL || !BIO_meth_set_read(m, tls_proxy_bio_read) || !BIO_meth_set_write(m, tls_proxy_bio_write) ||
	    !BIO_meth_set_ctrl(m, tls_proxy_bio_ctrl) || !BIO_meth_set_create(m, tls_proxy_bio_create) ||
	    !BIO_meth_set_destroy(m, tls_proxy_bio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	tls_proxy_bio_method = m;
}

/* A client that closes with close_notify leaves a good session: keep it in
 * the cache (OpenSSL drops sessions of connections freed mid-stream). */
static void tls_info(const SSL *ssl, int where, int ret)
{
	if ((where & SSL_CB_READ_ALERT) && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY)
		SSL_set_shutdown((SSL *)ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
}

/* At debug level, what the client offered, kept for the log line of a
 * failed handshake: a device that needs legacy_device_ciphers shows here. */
static int tls_client_hello(SSL *ssl, int *alert, void *arg)
{
	const unsigned char *p;
	size_t n, off;
	char *text;

	(void)alert;
	(void)arg;
	if (LOG_DEBUG < log_min_level || tls_hello_index < 0)
		return SSL_CLIENT_HELLO_SUCCESS;
	text = malloc(1024);
	if (text == NULL)
		return SSL_CLIENT_HELLO_SUCCESS;
	off = (size_t)snprintf(text, 1024, "offered legacy_version 0x%04x",
		SSL_client_hello_get0_legacy_version(ssl));
	if (SSL_client_hello_get0_ext(ssl, 43 /* supported_versions */, &p, &n) == 1 && n >= 1) {
		off += (size_t)snprintf(text + off, 1024 - off, " versions");
		for (size_t i = 1; i + 1 < n && i <= p[0] && off < 1000; i += 2)
			off += (size_t)snprintf(text + off, 1024 - off, " 0x%02x%02x", p[i], p[i + 1]);
	}
	n = SSL_client_hello_get0_ciphers(ssl, &p);
	off += (size_t)snprintf(text + off, 1024 - off, " suites");
	for (size_t i = 0; i + 1 < n && off < 960; i += 2) {
		const SSL_CIPHER *c = SSL_CIPHER_find(ssl, p + i);
		if (c)
			off += (size_t)snprintf(text + off, 1024 - off, " %s", SSL_CIPHER_get_name(c));
		else
			off += (size_t)snprintf(text + off, 1024 - off, " 0x%02x%02x", p[i], p[i + 1]);
	}
	if (!SSL_set_ex_data(ssl, tls_hello_index, text))
		free(text);
	return SSL_CLIENT_HELLO_SUCCESS;
}

int tls_ctx_new(const struct config_tls *tls, SSL_CTX **out, char **cause)
{
	static const unsigned char sid_ctx[] = "bootstrapd";
	char ciphers[1024];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	/* Here, before the event loop threads start, so that they only read. */
	pthread_once(&tls_once, tls_init);

	if (ctx == NULL) {
		tls_ssl_cause(cause, "cannot make a TLS context", NULL);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, tls->min_version ? tls->min_version : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
		SSL_OP_NO_RENEGOTIATION);
	snprintf(ciphers, sizeof(ciphers), "%s%s%s", tls->ciphers ? tls->ciphers : tls_modern_ciphers,
		tls->legacy_device_ciphers ? ":" : "", tls->legacy_device_ciphers ? tls_legacy_ciphers : "");
	if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
		tls_ssl_cause(cause, "tls.ciphers: no usable cipher in", ciphers);
		goto fail;
	}
	if (tls->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, tls->ciphersuites)) {
		tls_ssl_cause(cause, "tls.ciphersuites: no usable suite in", tls->ciphersuites);
		goto fail;
	}
	for (size_t i = 0; i < tls->ncerts; i++) {
		if (SSL_CTX_use_certificate_chain_file(ctx, tls->certs[i].cert) != 1) {
			tls_ssl_cause(cause, "cannot use certificate", tls->certs[i].cert);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, tls->certs[i].key, SSL_FILETYPE_PEM) != 1) {
			tls_ssl_cause(cause, "cannot use private key", tls->certs[i].key);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			tls_ssl_cause(cause, "private key does not match certificate", tls->certs[i].cert);
			goto fail;
		}
	}
	/* Session-id resumption next to tickets (on by default). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, 20000);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_timeout(ctx, 3600);
	SSL_CTX_set_info_callback(ctx, tls_info);
	SSL_CTX_set_client_hello_cb(ctx, tls_client_hello, NULL);
	/* Writes may be partial and resumed from a moved buffer; idle
	 * connections give their record buffers back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
		SSL_MODE_RELEASE_BUFFERS);
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}


SSL *tls_conn_new(SSL_CTX *ctx, int fd, struct proxyproto_conn *pp)
{
	SSL *ssl = SSL_new(ctx);
	BIO *sock, *filter;

	if (ssl == NULL)
		return NULL;
	sock = BIO_new_socket(fd, BIO_NOCLOSE);
	if (sock == NULL)
		goto fail;
	if (pp == NULL) {
		SSL_set_bio(ssl, sock, sock);
	} else {
		filter = tls_proxy_bio_method ? BIO_new(tls_proxy_bio_method) : NULL;
		if (filter == NULL) {
			BIO_free(sock);
			goto fail;
		}
		BIO_set_data(filter, pp);
		/* Reads through the filter, writes straight to the socket. */
		BIO_push(filter, sock);
		if (!BIO_up_ref(sock)) {
			BIO_free_all(filter);
			goto fail;
		}
		SSL_set_bio(ssl, filter, sock);
	}
	SSL_set_accept_state(ssl);
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

static const char *const tls_failure_names[TLS_FAILURE_N] = {
	[TLS_FAILURE_PROTOCOL_VERSION] = "protocol_version",
	[TLS_FAILURE_NO_SHARED_CIPHER] = "no_shared_cipher",
	[TLS_FAILURE_NO_SHARED_SIGALG] = "no_shared_signature_algorithm",
	[TLS_FAILURE_NOT_TLS] = "not_tls",
	[TLS_FAILURE_CLIENT_ALERT] = "client_alert",
	[TLS_FAILURE_PROXY_HEADER] = "proxy_header",
	[TLS_FAILURE_EOF] = "eof",
	[TLS_FAILURE_TIMEOUT] = "timeout",
	[TLS_FAILURE_OTHER] = "other",
};

const char *tls_failure_name(enum tls_failure f)
{
	return f < TLS_FAILURE_N ? tls_failure_names[f] : "other";
}

enum tls_failure tls_failure_classify(int ssl_error, unsigned long err)
{
	int reason = ERR_GET_REASON(err);

	if (ssl_error == SSL_ERROR_ZERO_RETURN || (ssl_error == SSL_ERROR_SYSCALL && err == 0))
		return TLS_FAILURE_EOF;
	if (err == 0)
		return TLS_FAILURE_OTHER;
	switch (reason) {
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_VERSION_TOO_HIGH:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		return TLS_FAILURE_PROTOCOL_VERSION;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_CIPHERS_SPECIFIED:
		return TLS_FAILURE_NO_SHARED_CIPHER;
	case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
		return TLS_FAILURE_NO_SHARED_SIGALG;
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_HTTP_REQUEST:
	case SSL_R_HTTPS_PROXY_REQUEST:
	case SSL_R_UNKNOWN_PROTOCOL:
		return TLS_FAILURE_NOT_TLS;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return TLS_FAILURE_EOF;
	default:
		/* Alerts the client sent: reasons 1000 + the alert number. */
		if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
			return TLS_FAILURE_CLIENT_ALERT;
		return TLS_FAILURE_OTHER;
	}
}

void tls_handshake_failed(SSL *ssl, enum tls_failure f, const char *peer)
{
	const char *offered = tls_hello_index >= 0 ? SSL_get_ex_data(ssl, tls_hello_index) : NULL;
	unsigned long err = ERR_peek_error();
	char text[160] = "";

	if (err)
		ERR_error_string_n(err, text, sizeof(text));
	ERR_clear_error();
	metrics_tls_failure(f);
	log_debug("tls", "handshake with %s failed: %s%s%s; %s", peer, tls_failure_name(f), text[0] ? ": " : "", text,
		offered ? offered : "nothing offered");
}
