/* tls: server TLS contexts (certificates, versions, ciphers, resumption),
 * a connection's SSL (reading a PROXY header from under it when asked), and
 * failed handshakes counted by reason and, at debug level, logged with what
 * the client offered. */
#ifndef BOOTSTRAPD_TLS_H
#define BOOTSTRAPD_TLS_H

#include <openssl/ssl.h>

struct config_tls;
struct proxyproto_conn;

enum tls_failure {
	TLS_FAILURE_PROTOCOL_VERSION, /* no version in common (e.g. TLS 1.1 offered) */
	TLS_FAILURE_NO_SHARED_CIPHER, /* e.g. a static-RSA stack without legacy_device_ciphers */
	TLS_FAILURE_NO_SHARED_SIGALG,
	TLS_FAILURE_NOT_TLS,          /* plain HTTP or garbage on a TLS port */
	TLS_FAILURE_CLIENT_ALERT,     /* the client refused us (e.g. unknown CA) */
	TLS_FAILURE_PROXY_HEADER,     /* a malformed PROXY header */
	TLS_FAILURE_EOF,              /* the client went away mid-handshake */
	TLS_FAILURE_TIMEOUT,          /* no handshake within limits.request_timeout_s */
	TLS_FAILURE_OTHER,
	TLS_FAILURE_N
};

/* Builds the server TLS context: every certificate/key pair, the minimum
 * version, cipher lists, session cache and tickets. -1 with *cause on error. */
int tls_ctx_new(const struct config_tls *tls, SSL_CTX **out, char **cause) __attribute__((warn_unused_result));

/* A server-side SSL on FD (not owned). With PP (not owned, must outlive the
 * SSL), the PROXY header is read from under OpenSSL first. NULL when out of
 * memory. */
SSL *tls_conn_new(SSL_CTX *ctx, int fd, struct proxyproto_conn *pp);

/* What SSL_get_error's SSL_ERROR and the first queued error ERR say. */
enum tls_failure tls_failure_classify(int ssl_error, unsigned long err);
const char *tls_failure_name(enum tls_failure f);
/* Counts F, logs it at debug level with PEER and what the client offered,
 * and clears OpenSSL's error queue. */
void tls_handshake_failed(SSL *ssl, enum tls_failure f, const char *peer);

#endif
