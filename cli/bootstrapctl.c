/* bootstrapctl: the operator's command line for bootstrapd's admin API
 * (docs/bootstrapctl.md). The command line, the requests and the text are
 * the ctl module's; here are the transport (libcurl's easy interface) and
 * what each command does with its answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <yajl/yajl_tree.h>

#include "ctl.h"

/* Answers and uploads: far above anything the service answers or takes. */
#define BUF_MAX ((size_t)64 << 20)
#define WATCH_INTERVAL_MS 250

struct answer {
	long status;
	char *body; /* LEN bytes and a NUL after them */
	size_t len, cap;
};

struct client {
	CURL *curl;
	const struct ctl_args *args;
	size_t base_len; /* of args->url without its trailing slashes */
	char errbuf[CURL_ERROR_SIZE];
};

/* Room for MORE bytes and a NUL in ANS: 0, or -1 past BUF_MAX or out of memory. */
static int answer_reserve(struct answer *ans, size_t more)
{
	size_t cap = ans->cap ? ans->cap : 4096;
	char *body;

	if (more > BUF_MAX - ans->len)
		return -1;
	if (ans->len + more + 1 <= ans->cap)
		return 0;
	while (cap < ans->len + more + 1)
		cap *= 2;
	if ((body = realloc(ans->body, cap)) == NULL)
		return -1;
	ans->body = body;
	ans->cap = cap;
	return 0;
}

static size_t answer_write(char *data, size_t size, size_t n, void *arg)
{
	struct answer *ans = arg;
	size_t len = size * n;

	if (answer_reserve(ans, len) < 0)
		return 0;
	memcpy(ans->body + ans->len, data, len);
	ans->len += len;
	ans->body[ans->len] = '\0';
	return len;
}

/* Empties ANS for the next answer, its body "" (never NULL): 0 or -1. */
static int answer_reset(struct answer *ans)
{
	ans->len = 0;
	ans->status = 0;
	if (answer_reserve(ans, 0) < 0)
		return -1;
	ans->body[0] = '\0';
	return 0;
}

static int client_init(struct client *c, const struct ctl_args *a)
{
	long connect_s = a->timeout_s < 10 ? a->timeout_s : 10;

	memset(c, 0, sizeof(*c));
	c->args = a;
	c->base_len = strlen(a->url);
	while (c->base_len > 0 && a->url[c->base_len - 1] == '/')
		c->base_len--;
	if ((c->curl = curl_easy_init()) == NULL)
		return -1;
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, a->timeout_s);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, connect_s);
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "bootstrapctl/" BOOTSTRAPD_VERSION);
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, answer_write);
	if (a->cacert)
		curl_easy_setopt(c->curl, CURLOPT_CAINFO, a->cacert);
	if (a->insecure) {
		curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return 0;
}

static void client_deinit(struct client *c)
{
	curl_easy_cleanup(c->curl);
}

/* Appends LINE to *H; on failure frees the whole list and returns -1. */
static int header_add(struct curl_slist **h, const char *line)
{
	struct curl_slist *next = curl_slist_append(*h, line);

	if (next == NULL) {
		curl_slist_free_all(*h);
		*h = NULL;
		return -1;
	}
	*h = next;
	return 0;
}

/* The request's headers: the token, its body's type ("Content-Type:" alone
 * keeps libcurl from claiming a form), and no "Expect:" (the service answers
 * 100-continue, but a round trip is saved). NULL when out of memory. */
static struct curl_slist *client_headers(const struct client *c, const struct ctl_request *r)
{
	struct curl_slist *h = NULL;
	char *auth = NULL, type[64] = "Content-Type:";
	size_t n;

	if (r->content_type)
		snprintf(type, sizeof(type), "Content-Type: %s", r->content_type);
	if (header_add(&h, "Expect:") < 0 || header_add(&h, type) < 0)
		return NULL;
	if (c->args->token) {
		n = strlen(c->args->token) + sizeof("Authorization: Bearer ");
		if ((auth = malloc(n)) == NULL) {
			curl_slist_free_all(h);
			return NULL;
		}
		snprintf(auth, n, "Authorization: Bearer %s", c->args->token);
		(void)header_add(&h, auth);
		free(auth);
	}
	return h;
}

static void client_say_refused(const struct answer *ans)
{
	char msg[1024];

	if (ctl_api_error(ans->body, ans->len, msg, sizeof(msg)) == 0)
		fprintf(stderr, "bootstrapctl: HTTP %ld: %s\n", ans->status, msg);
	else
		fprintf(stderr, "bootstrapctl: HTTP %ld, and not the admin API's error in the answer\n", ans->status);
}

/* Makes R with BODY (LEN bytes, or NULL) into ANS. Returns the exit status:
 * 0 for a 2xx answer, else what went wrong, said on stderr. */
static int client_call(struct client *c, const struct ctl_request *r, const char *body, size_t len,
	struct answer *ans)
{
	struct curl_slist *headers = client_headers(c, r);
	size_t ulen = c->base_len + strlen(r->path) + 1;
	char *url = malloc(ulen);
	CURLcode res;
	int rc = CTL_EXIT_REFUSED;

	if (headers == NULL || url == NULL || answer_reset(ans) < 0) {
		fprintf(stderr, "bootstrapctl: out of memory\n");
		goto out;
	}
	snprintf(url, ulen, "%.*s%s", (int)c->base_len, c->args->url, r->path);
	c->errbuf[0] = '\0';
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, ans);
	if (strcmp(r->method, "GET") == 0) {
		curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
	} else {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, strcmp(r->method, "POST") == 0 ? NULL : r->method);
	}
	res = curl_easy_perform(c->curl);
	if (res == CURLE_WRITE_ERROR) {
		fprintf(stderr, "bootstrapctl: the answer is larger than %zu MiB\n", BUF_MAX >> 20);
		goto out;
	}
	if (res != CURLE_OK) {
		fprintf(stderr, "bootstrapctl: cannot reach the service: %s\n",
			c->errbuf[0] ? c->errbuf : curl_easy_strerror(res));
		rc = CTL_EXIT_UNREACHABLE;
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &ans->status);
	if (ans->status >= 200 && ans->status < 300)
		rc = CTL_EXIT_OK;
	else
		client_say_refused(ans);
out:
	curl_slist_free_all(headers);
	free(url);
	return rc;
}

/* PATH's bytes ("-": stdin) into *OUT (caller frees) and *LEN. */
static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	struct answer buf = { 0 };
	char chunk[65536];
	size_t n;
	int rc = -1;

	if (f == NULL) {
		fprintf(stderr, "bootstrapctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (answer_write(chunk, 1, n, &buf) != n) {
			fprintf(stderr, "bootstrapctl: %s: larger than %zu MiB\n", path, BUF_MAX >> 20);
			goto out;
		}
	}
	if (ferror(f)) {
		fprintf(stderr, "bootstrapctl: %s: %s\n", path, strerror(errno));
		goto out;
	}
	*out = buf.body;
	*len = buf.len;
	buf.body = NULL;
	rc = 0;
out:
	free(buf.body);
	if (f != stdin)
		fclose(f);
	return rc;
}

static int unexpected(const char *what)
{
	fprintf(stderr, "bootstrapctl: unexpected answer: %s\n", what);
	return CTL_EXIT_REFUSED;
}

static yajl_val answer_tree(const struct answer *ans)
{
	return ans->len ? yajl_tree_parse(ans->body, NULL, 0) : NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Prints what a watch shows of B (the answer ANS) on OUT: the bar on a
 * terminal, else a line (or with JSON the answer) when it is not *PREV
 * (what was printed last, kept in *PREV). */
static void watch_show(FILE *out, bool json, const struct ctl_batch *b, const struct answer *ans, char **prev)
{
	char line[1024];

	if (!json && isatty(fileno(out))) {
		ctl_batch_bar_line(b, line, sizeof(line));
		fprintf(out, "\r%s\033[K", line);
		fflush(out);
		return;
	}
	if (json)
		snprintf(line, sizeof(line), "%s", ans->body);
	else
		ctl_batch_line(b, line, sizeof(line));
	if (*prev && strcmp(*prev, json ? ans->body : line) == 0)
		return;
	fprintf(out, "%s\n", json ? ans->body : line);
	fflush(out);
	free(*prev);
	*prev = strdup(json ? ans->body : line);
}

/* Follows batch ID until it is completed or failed, its progress on OUT.
 * HAVE: ANS already holds its first answer. ANS ends with the last one.
 * Returns the exit status: 0 completed, 1 failed (said on stderr). */
static int watch(struct client *c, const char *id, FILE *out, bool json, struct answer *ans, bool have)
{
	struct ctl_request req;
	struct ctl_batch b;
	char *prev = NULL;
	yajl_val v = NULL;
	bool failed = false;
	int rc;

	if (ctl_request_batch(id, &req) < 0)
		return unexpected("out of memory");
	for (;;) {
		if (!have && (rc = client_call(c, &req, NULL, 0, ans)) != CTL_EXIT_OK)
			break;
		have = false;
		if ((v = answer_tree(ans)) == NULL || ctl_batch_read(v, &b) < 0) {
			rc = unexpected("not a batch");
			break;
		}
		watch_show(out, json, &b, ans, &prev);
		if (ctl_batch_done(&b)) {
			failed = strcmp(b.status, "failed") == 0;
			rc = failed ? CTL_EXIT_REFUSED : CTL_EXIT_OK;
			break;
		}
		yajl_tree_free(v);
		v = NULL;
		sleep_ms(WATCH_INTERVAL_MS);
	}
	if (!json && isatty(fileno(out)))
		fputc('\n', out);
	if (failed)
		fprintf(stderr, "bootstrapctl: batch %s failed (bootstrapctl batch retry %s puts it back to work)\n", id,
			id);
	yajl_tree_free(v);
	free(prev);
	ctl_request_deinit(&req);
	return rc;
}

static int show_raw(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	(void)c;
	(void)a;
	fwrite(ans->body, 1, ans->len, stdout);
	if (ans->len && ans->body[ans->len - 1] != '\n')
		fputc('\n', stdout);
	return CTL_EXIT_OK;
}

static int show_pretty(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	(void)c;
	(void)a;
	return ctl_json_pretty(stdout, ans->body, ans->len) == 0 ? CTL_EXIT_OK : unexpected("not JSON");
}

static int show_tree(const struct answer *ans, void (*print)(FILE *, yajl_val))
{
	yajl_val v = answer_tree(ans);

	if (v == NULL)
		return unexpected("not JSON");
	print(stdout, v);
	yajl_tree_free(v);
	return CTL_EXIT_OK;
}

static int show_regions(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	(void)c;
	(void)a;
	return show_tree(ans, ctl_regions_print);
}

static int show_stats(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	(void)c;
	(void)a;
	return show_tree(ans, ctl_stats_print);
}

static int show_status(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	if (a->watch)
		return watch(c, a->pos[0], stdout, a->json, ans, true);
	return show_tree(ans, ctl_batch_print);
}

/* After a create or a retry: --wait follows the batch on stderr, and with
 * --json its last answer goes to stdout. */
static int follow(struct client *c, const struct ctl_args *a, const char *id, struct answer *ans)
{
	int rc = watch(c, id, stderr, false, ans, false);

	if (a->json && ans->len)
		show_raw(c, a, ans);
	return rc;
}

/* The batch id of a create or retry answer, copied into ID. */
static int answer_batch_id(const struct answer *ans, char id[32])
{
	yajl_val v = answer_tree(ans);
	const char *path[] = { "batchId", NULL };
	yajl_val s = v ? yajl_tree_get(v, path, yajl_t_string) : NULL;
	int rc = -1;

	if (s && strlen(s->u.string) < 32) {
		memcpy(id, s->u.string, strlen(s->u.string) + 1);
		rc = 0;
	}
	yajl_tree_free(v);
	return rc;
}

static int show_created(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	char id[32];

	if (answer_batch_id(ans, id) < 0)
		return unexpected("no batchId");
	if (!a->json) {
		printf("%s\n", id);
		fflush(stdout);
	}
	return a->wait ? follow(c, a, id, ans) : CTL_EXIT_OK;
}

static int show_retry(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	const char *path[] = { "queued", NULL };
	yajl_val v, q;

	if (a->wait)
		return follow(c, a, a->pos[0], ans);
	if ((v = answer_tree(ans)) == NULL)
		return unexpected("not JSON");
	q = yajl_tree_get(v, path, yajl_t_number);
	printf("batch %s: running again, %lld rows queued\n", a->pos[0], YAJL_IS_INTEGER(q) ? YAJL_GET_INTEGER(q) : 0);
	yajl_tree_free(v);
	return CTL_EXIT_OK;
}

static int show_list(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	const char *pb[] = { "batches", NULL }, *pc[] = { "nextCursor", NULL }, *pt[] = { "createdAt", NULL };
	yajl_val v = answer_tree(ans), list = v ? yajl_tree_get(v, pb, yajl_t_array) : NULL, next;
	struct ctl_batch b;
	char line[1024];

	(void)c;
	if (list == NULL) {
		yajl_tree_free(v);
		return unexpected("no batches");
	}
	for (size_t i = 0; i < list->u.array.len; i++) {
		yajl_val item = list->u.array.values[i], t = yajl_tree_get(item, pt, yajl_t_string);
		if (ctl_batch_read(item, &b) < 0)
			continue;
		ctl_batch_line(&b, line, sizeof(line));
		printf("%s  (created %s)\n", line, t ? t->u.string : "-");
	}
	next = yajl_tree_get(v, pc, yajl_t_string);
	if (next && a->limit > 0)
		fprintf(stderr, "more: bootstrapctl batch list --limit %ld --cursor %s\n", a->limit, next->u.string);
	else if (next)
		fprintf(stderr, "more: bootstrapctl batch list --cursor %s\n", next->u.string);
	yajl_tree_free(v);
	return CTL_EXIT_OK;
}

static int show_auth_code(struct client *c, const struct ctl_args *a, struct answer *ans)
{
	const char *pc[] = { "authCode", NULL }, *pe[] = { "expiresIn", NULL };
	yajl_val v = answer_tree(ans), code = v ? yajl_tree_get(v, pc, yajl_t_string) : NULL;
	yajl_val exp = v ? yajl_tree_get(v, pe, yajl_t_number) : NULL;

	(void)c;
	if (code == NULL) {
		yajl_tree_free(v);
		return unexpected("no authCode");
	}
	printf("%s\n", code->u.string);
	fflush(stdout);
	fprintf(stderr, "valid %lld s, for one batch into account %s\n", YAJL_IS_INTEGER(exp) ? YAJL_GET_INTEGER(exp) : 0,
		a->pos[0]);
	yajl_tree_free(v);
	return CTL_EXIT_OK;
}

typedef int (*show_fn)(struct client *c, const struct ctl_args *a, struct answer *ans);

/* What each command does with a 2xx answer. */
static const show_fn shows[CTL_NVERBS] = {
	[CTL_REGIONS] = show_regions,
	[CTL_PRODUCT_PUT] = show_pretty,
	[CTL_PRODUCT_GET] = show_pretty,
	[CTL_DEVICES_REGISTER] = show_raw,
	[CTL_DEVICE_GET] = show_pretty,
	[CTL_RESOLVE] = show_pretty,
	[CTL_BATCH_TEMPLATE] = show_raw,
	[CTL_BATCH_CREATE] = show_created,
	[CTL_BATCH_STATUS] = show_status,
	[CTL_BATCH_RESULTS] = show_raw,
	[CTL_BATCH_LIST] = show_list,
	[CTL_BATCH_RETRY] = show_retry,
	[CTL_AUTH_CODE] = show_auth_code,
	[CTL_STATS] = show_stats,
};

static show_fn show_for(const struct ctl_args *a)
{
	/* --json prints the answer as it is, except where the command goes on
	 * to follow a batch. */
	if (a->json && !a->wait && !a->watch)
		return show_raw;
	return shows[a->command->verb];
}

/* Makes A's call and shows its answer: the exit status. */
static int run(const struct ctl_args *a)
{
	struct client c = { 0 };
	struct ctl_request req = { 0 };
	struct answer ans = { 0 };
	char *body = NULL;
	size_t len = 0;
	int rc = CTL_EXIT_REFUSED;

	if (client_init(&c, a) < 0 || ctl_request_build(a, &req) < 0) {
		fprintf(stderr, "bootstrapctl: out of memory\n");
		goto out;
	}
	if (req.file && read_file(req.file, &body, &len) < 0) {
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	rc = client_call(&c, &req, req.file ? body : req.body, req.file ? len : req.body_len, &ans);
	if (rc == CTL_EXIT_OK)
		rc = show_for(a)(&c, a, &ans);
out:
	free(ans.body);
	free(body);
	ctl_request_deinit(&req);
	client_deinit(&c);
	return rc;
}

int main(int argc, char **argv)
{
	const struct ctl_env env = {
		getenv("BOOTSTRAPCTL_URL"), getenv("BOOTSTRAPCTL_TOKEN"), getenv("BOOTSTRAPCTL_CACERT"),
	};
	struct ctl_args a;
	char err[512];
	int rc;

	if (ctl_args_parse(argc, argv, &env, &a, err, sizeof(err)) < 0) {
		fprintf(stderr, "bootstrapctl: %s\n", err);
		ctl_usage(stderr, &a);
		return CTL_EXIT_USAGE;
	}
	if (a.version) {
		printf("bootstrapctl %s\n", BOOTSTRAPD_VERSION);
		return CTL_EXIT_OK;
	}
	if (a.help) {
		ctl_help(stdout, &a);
		return CTL_EXIT_OK;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "bootstrapctl: cannot initialise libcurl\n");
		return CTL_EXIT_REFUSED;
	}
	rc = run(&a);
	curl_global_cleanup();
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "bootstrapctl: cannot write the output: %s\n", strerror(errno));
		rc = rc ? rc : CTL_EXIT_REFUSED;
	}
	return rc;
}
