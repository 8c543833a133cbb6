/* The MQTT client against real mosquitto brokers that each test starts in a
 * temporary directory on a free loopback port. Every wait runs the event
 * loop towards a deadline; every process started here is killed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <event2/event.h>

#include "log.h"
#include "mqtt.h"

#define MAX_CLIENTS 4
#define MAX_BROKERS 2
#define MAX_MIDS 128
#define NOTIFY_TOPIC "/sys/pk1/dev1/thing/bootstrap/notify"
#define NOTIFY_FILTER "/sys/+/+/thing/bootstrap/notify"
#define NOTIFY_PAYLOAD \
	"{\"id\":\"42\",\"version\":\"1.0\",\"method\":\"thing.bootstrap.notify\",\"params\":{\"cmd\":0}}"

struct client {
	struct mqtt *m;
	int ups, downs;
	char why[256];
	int mids[MAX_MIDS];
	int nmids;
	int nmsg;
	char topic[256];
	unsigned char payload[512];
	size_t len;
	bool free_on_down; /* frees its client from on_state(false) */
	bool freed;
	int calls_after_free;
};

struct broker {
	pid_t pid;
	int port;
	char name[16];
	char conf[256];
	char log[256];
};

struct fixture {
	char dir[64];
	struct event_base *base;
	struct event *tick;
	struct client clients[MAX_CLIENTS];
	struct broker brokers[MAX_BROKERS];
};

static char mosquitto_bin[256];
static pid_t live_pids[16]; /* the safety net behind each teardown */

static void remember_pid(pid_t pid)
{
	for (size_t i = 0; i < sizeof(live_pids) / sizeof(live_pids[0]); i++) {
		if (live_pids[i] == 0) {
			live_pids[i] = pid;
			return;
		}
	}
}

static void forget_pid(pid_t pid)
{
	for (size_t i = 0; i < sizeof(live_pids) / sizeof(live_pids[0]); i++)
		if (live_pids[i] == pid)
			live_pids[i] = 0;
}

static void kill_everything(void)
{
	for (size_t i = 0; i < sizeof(live_pids) / sizeof(live_pids[0]); i++) {
		if (live_pids[i] > 0) {
			kill(live_pids[i], SIGKILL);
			waitpid(live_pids[i], NULL, 0);
			live_pids[i] = 0;
		}
	}
}

/* Finds NAME in $PATH or the sbin directories (mosquitto lives there). */
static bool find_program(const char *name, char *out, size_t size)
{
	const char *path = getenv("PATH");
	char dirs[4096];

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/usr/local/sbin:/sbin", path != NULL ? path : "");
	for (char *save = NULL, *dir = strtok_r(dirs, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(out, size, "%s/%s", dir, name);
		if (access(out, X_OK) == 0)
			return true;
	}
	return false;
}

static void require_mosquitto(void)
{
	if (mosquitto_bin[0] == '\0') {
		print_message("mosquitto broker not found (PATH, /usr/sbin): install the "
			"'mosquitto' package to run the MQTT tests\n");
		skip();
	}
}

static struct timespec now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

static long ms_since(struct timespec start)
{
	struct timespec t = now_mono();

	return (t.tv_sec - start.tv_sec) * 1000 + (t.tv_nsec - start.tv_nsec) / 1000000;
}

static void dump_file(const char *path)
{
	char line[512];
	FILE *fp = fopen(path, "r");

	if (fp == NULL)
		return;
	print_message("---- %s\n", path);
	while (fgets(line, sizeof(line), fp) != NULL)
		print_message("%s", line);
	fclose(fp);
}

static void dump_logs(const struct fixture *f)
{
	for (int i = 0; i < MAX_BROKERS; i++)
		if (f->brokers[i].log[0] != '\0')
			dump_file(f->brokers[i].log);
}

/* Runs the loop until COND holds, failing (with the brokers' logs) after MS. */
#define WAIT_FOR(f, ms, cond) \
	do { \
		struct timespec start_ = now_mono(); \
		while (!(cond) && ms_since(start_) < (ms)) \
			event_base_loop((f)->base, EVLOOP_ONCE); \
		if (!(cond)) { \
			dump_logs(f); \
			fail_msg("no \"%s\" within %d ms", #cond, (ms)); \
		} \
	} while (0)

/* Runs the loop for MS milliseconds. */
static void run_for(struct fixture *f, int ms)
{
	struct timespec start = now_mono();

	while (ms_since(start) < ms)
		event_base_loop(f->base, EVLOOP_ONCE);
}

/* A loopback port nothing listens on (just now). */
static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static bool port_accepts(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Runs ARGV to completion with its output in LOG; true when it exits 0. */
static bool run_command(char *const argv[], const char *log)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	remember_pid(pid);
	if (waitpid(pid, &status, 0) != pid)
		status = -1;
	forget_pid(pid);
	if (status != 0)
		dump_file(log);
	return status == 0;
}

/* Writes B's configuration (a listener on its port plus EXTRA) the first
 * time, then starts the broker and waits until it accepts connections. */
static void broker_start(struct fixture *f, struct broker *b, const char *name, const char *extra)
{
	struct timespec start;
	pid_t pid;

	if (b->port == 0) {
		FILE *fp;

		b->port = free_port();
		snprintf(b->name, sizeof(b->name), "%s", name);
		snprintf(b->conf, sizeof(b->conf), "%s/%s.conf", f->dir, name);
		snprintf(b->log, sizeof(b->log), "%s/%s.log", f->dir, name);
		fp = fopen(b->conf, "w");
		assert_non_null(fp);
		fprintf(fp, "listener %d 127.0.0.1\npersistence false\nlog_dest stderr\n"
			"log_type all\n%s%s", b->port,
			geteuid() == 0 ? "user root\n" : "", extra != NULL ? extra : "");
		if (extra == NULL || strstr(extra, "allow_anonymous") == NULL)
			fprintf(fp, "allow_anonymous true\n");
		assert_int_equal(fclose(fp), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(mosquitto_bin, "mosquitto", "-c", b->conf, (char *)NULL);
		_exit(127);
	}
	b->pid = pid;
	remember_pid(pid);
	start = now_mono();
	while (!port_accepts(b->port)) {
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		if (waitpid(pid, NULL, WNOHANG) == pid) {
			forget_pid(pid);
			b->pid = 0;
			dump_file(b->log);
			fail_msg("mosquitto (%s) exited at start", b->name);
		}
		if (ms_since(start) > 5000) {
			dump_file(b->log);
			fail_msg("mosquitto (%s) not accepting on port %d within 5 s", b->name,
				b->port);
		}
		nanosleep(&pause, NULL);
	}
}

static void broker_stop(struct broker *b, int sig)
{
	struct timespec start = now_mono();

	if (b->pid <= 0)
		return;
	kill(b->pid, sig);
	while (waitpid(b->pid, NULL, WNOHANG) == 0) {
		struct timespec pause = { 0, 10 * 1000 * 1000 };

		if (ms_since(start) > 2000) {
			kill(b->pid, SIGKILL);
			waitpid(b->pid, NULL, 0);
			break;
		}
		nanosleep(&pause, NULL);
	}
	forget_pid(b->pid);
	b->pid = 0;
}

static void on_state(struct mqtt *m, bool connected, const char *why, void *arg)
{
	struct client *c = arg;

	if (c->freed) {
		c->calls_after_free++;
		return;
	}
	assert_ptr_equal(m, c->m);
	assert_non_null(why);
	snprintf(c->why, sizeof(c->why), "%s", why);
	if (connected) {
		c->ups++;
		assert_string_equal(why, "");
	} else {
		c->downs++;
		assert_true(why[0] != '\0');
	}
	if (!connected && c->free_on_down) {
		mqtt_free(m);
		c->m = NULL;
		c->freed = true;
	}
}

static void on_puback(struct mqtt *m, int mid, void *arg)
{
	struct client *c = arg;

	if (c->freed) {
		c->calls_after_free++;
		return;
	}
	assert_ptr_equal(m, c->m);
	if (c->nmids < MAX_MIDS)
		c->mids[c->nmids] = mid;
	c->nmids++;
}

static void on_message(struct mqtt *m, const char *topic, const void *payload, size_t len,
	void *arg)
{
	struct client *c = arg;

	if (c->freed) {
		c->calls_after_free++;
		return;
	}
	assert_ptr_equal(m, c->m);
	c->nmsg++;
	snprintf(c->topic, sizeof(c->topic), "%s", topic);
	assert_true(len <= sizeof(c->payload));
	if (len > 0)
		memcpy(c->payload, payload, len);
	c->len = len;
}

static const struct mqtt_callbacks callbacks = { on_state, on_puback, on_message };

static void client_start(struct fixture *f, struct client *c, const struct mqtt_options *opt)
{
	char *cause = NULL;

	c->m = mqtt_new(f->base, opt, &callbacks, c, &cause);
	if (c->m == NULL)
		fail_msg("mqtt_new(%s): %s", opt->url, cause != NULL ? cause : "?");
	assert_null(cause);
}

static const char *url_of(const struct broker *b, const char *scheme)
{
	static char url[64];

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d", scheme, b->port);
	return url;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static int setup(void **state)
{
	struct timeval tick = { 0, 20 * 1000 };
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_mqtt.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	f->base = event_base_new();
	/* EVLOOP_ONCE returns at least this often, so deadlines are checked. */
	f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
	if (f->base == NULL || f->tick == NULL || event_add(f->tick, &tick) != 0)
		return -1;
	*state = f;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < MAX_CLIENTS; i++)
		mqtt_free(f->clients[i].m);
	for (int i = 0; i < MAX_BROKERS; i++)
		broker_stop(&f->brokers[i], SIGTERM);
	event_free(f->tick);
	event_base_free(f->base);
	nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void test_connect(void **state)
{
	struct fixture *f = *state;
	struct broker *b = &f->brokers[0];
	struct client *c = &f->clients[0];
	struct mqtt_options opt = { .client_id = "test-connect" };

	require_mosquitto();
	broker_start(f, b, "plain", NULL);
	opt.url = url_of(b, "mqtt");
	client_start(f, c, &opt);
	/* Nothing happens before the loop runs. */
	assert_int_equal(c->ups + c->downs, 0);
	assert_false(mqtt_connected(c->m));
	assert_string_equal(mqtt_state_reason(c->m), "connecting");
	assert_int_equal(mqtt_publish(c->m, NOTIFY_TOPIC, "x", 1), -1);

	WAIT_FOR(f, 5000, c->ups == 1);
	assert_int_equal(c->downs, 0);
	assert_true(mqtt_connected(c->m));
	assert_string_equal(mqtt_state_reason(c->m), "");
	/* Keepalive and idle loop turns do not disturb it. */
	run_for(f, 600);
	assert_int_equal(c->ups, 1);
	assert_int_equal(c->downs, 0);
	mqtt_free(c->m);
	c->m = NULL;
}

static void test_publish(void **state)
{
	struct fixture *f = *state;
	struct broker *b = &f->brokers[0];
	struct client *pub = &f->clients[0], *sub = &f->clients[1];
	struct mqtt_options popt = { .client_id = "test-pub" };
	struct mqtt_options sopt = { .client_id = "test-sub", .subscribe = NOTIFY_FILTER };
	static const unsigned char binary[] = { 0, 1, 2, 0xff, 0, '{' };
	int mid, mids[50];

	require_mosquitto();
	broker_start(f, b, "plain", NULL);
	popt.url = url_of(b, "mqtt");
	sopt.url = url_of(b, "mqtt");
	client_start(f, pub, &popt);
	client_start(f, sub, &sopt);
	WAIT_FOR(f, 5000, pub->ups == 1 && sub->ups == 1);
	/* The broker handles one connection's packets in order: once its own
	 * probe comes back, the subscription is in place. */
	assert_true(mqtt_publish(sub->m, "/sys/probe/probe/thing/bootstrap/notify", "p", 1) > 0);
	WAIT_FOR(f, 3000, sub->nmsg == 1);

	mid = mqtt_publish(pub->m, NOTIFY_TOPIC, NOTIFY_PAYLOAD, strlen(NOTIFY_PAYLOAD));
	assert_true(mid > 0);
	WAIT_FOR(f, 3000, pub->nmids == 1 && sub->nmsg == 2);
	assert_int_equal(pub->mids[0], mid);
	assert_string_equal(sub->topic, NOTIFY_TOPIC);
	assert_int_equal(sub->len, strlen(NOTIFY_PAYLOAD));
	assert_memory_equal(sub->payload, NOTIFY_PAYLOAD, sub->len);

	/* Binary payloads keep their length. */
	mid = mqtt_publish(pub->m, "/sys/pk2/dev2/thing/bootstrap/notify", binary, sizeof(binary));
	assert_true(mid > 0);
	WAIT_FOR(f, 3000, pub->nmids == 2 && sub->nmsg == 3);
	assert_int_equal(pub->mids[1], mid);
	assert_int_equal(sub->len, sizeof(binary));
	assert_memory_equal(sub->payload, binary, sizeof(binary));

	/* A burst: every message is acknowledged once, by its own id. */
	for (int i = 0; i < 50; i++) {
		char payload[32];

		snprintf(payload, sizeof(payload), "{\"n\":%d}", i);
		mids[i] = mqtt_publish(pub->m, NOTIFY_TOPIC, payload, strlen(payload));
		assert_true(mids[i] > 0);
	}
	WAIT_FOR(f, 5000, pub->nmids == 52 && sub->nmsg == 53);
	for (int i = 0; i < 50; i++) {
		int seen = 0;

		for (int j = 2; j < 52; j++)
			seen += pub->mids[j] == mids[i];
		assert_int_equal(seen, 1);
	}
	assert_int_equal(pub->downs + sub->downs, 0);
}

static void test_reconnect(void **state)
{
	struct fixture *f = *state;
	struct broker *b = &f->brokers[0];
	struct client *c = &f->clients[0];
	struct mqtt_options opt = { .client_id = "test-reconnect" };
	int mid;

	require_mosquitto();
	broker_start(f, b, "plain", NULL);
	opt.url = url_of(b, "mqtt");
	client_start(f, c, &opt);
	WAIT_FOR(f, 5000, c->ups == 1);

	broker_stop(b, SIGKILL);
	WAIT_FOR(f, 3000, c->downs == 1);
	assert_false(mqtt_connected(c->m));
	assert_string_equal(mqtt_state_reason(c->m), c->why);
	assert_int_equal(mqtt_publish(c->m, NOTIFY_TOPIC, "x", 1), -1);
	/* Retries that fail while down are not reported again. */
	run_for(f, 1200);
	assert_int_equal(c->downs, 1);
	assert_int_equal(c->ups, 1);
	assert_non_null(strstr(mqtt_state_reason(c->m), "refused"));

	broker_start(f, b, "plain", NULL);
	WAIT_FOR(f, 8000, c->ups == 2);
	assert_int_equal(c->downs, 1);
	assert_true(mqtt_connected(c->m));
	mid = mqtt_publish(c->m, NOTIFY_TOPIC, "x", 1);
	assert_true(mid > 0);
	WAIT_FOR(f, 3000, c->nmids == 1);
	assert_int_equal(c->mids[0], mid);
}

/* libmosquitto keeps a message that has an id until its PUBACK, through
 * reconnects: one published while the broker hangs is acknowledged after
 * the broker comes back, and so is one whose write met the dead socket. */
static void test_inflight_across_reconnect(void **state)
{
	struct fixture *f = *state;
	struct broker *b = &f->brokers[0];
	struct client *c = &f->clients[0];
	struct mqtt_options opt = { .client_id = "test-inflight" };
	int before, during;

	require_mosquitto();
	broker_start(f, b, "plain", NULL);
	opt.url = url_of(b, "mqtt");
	client_start(f, c, &opt);
	WAIT_FOR(f, 5000, c->ups == 1);

	assert_int_equal(kill(b->pid, SIGSTOP), 0);
	before = mqtt_publish(c->m, NOTIFY_TOPIC, "before", 6);
	assert_true(before > 0);
	run_for(f, 200);
	assert_int_equal(c->nmids, 0);
	broker_stop(b, SIGKILL);
	/* Still connected as far as the client knows. */
	during = mqtt_publish(c->m, NOTIFY_TOPIC, "during", 6);
	assert_true(during > 0);
	assert_int_not_equal(during, before);
	WAIT_FOR(f, 3000, c->downs == 1);
	assert_int_equal(c->nmids, 0);

	broker_start(f, b, "plain", NULL);
	WAIT_FOR(f, 8000, c->ups == 2 && c->nmids == 2);
	assert_true((c->mids[0] == before && c->mids[1] == during) ||
		(c->mids[0] == during && c->mids[1] == before));
	run_for(f, 300);
	assert_int_equal(c->nmids, 2);
}

static void test_auth(void **state)
{
	struct fixture *f = *state;
	struct broker *b = &f->brokers[0];
	struct client *wrong = &f->clients[0], *right = &f->clients[1], *anon = &f->clients[2];
	struct mqtt_options opt = { .client_id = "test-auth-wrong", .username = "bootstrapd",
		.password = "wrong" };
	char passwd[256], pwfile[128], log[128], extra[256];

	require_mosquitto();
	if (!find_program("mosquitto_passwd", passwd, sizeof(passwd))) {
		print_message("mosquitto_passwd not found: cannot test authentication\n");
		skip();
	}
	snprintf(pwfile, sizeof(pwfile), "%s/passwd", f->dir);
	snprintf(log, sizeof(log), "%s/mosquitto_passwd.log", f->dir);
	{
		char *argv[] = { passwd, "-b", "-c", pwfile, "bootstrapd", "s3cret", NULL };

		assert_true(run_command(argv, log));
	}
	snprintf(extra, sizeof(extra), "allow_anonymous false\npassword_file %s\n", pwfile);
	broker_start(f, b, "auth", extra);
	opt.url = url_of(b, "mqtt");
	client_start(f, wrong, &opt);
	WAIT_FOR(f, 5000, wrong->downs == 1);
	assert_non_null(strstr(wrong->why, "not authorised"));
	assert_null(strstr(wrong->why, "wrong"));
	assert_string_equal(mqtt_state_reason(wrong->m), wrong->why);
	assert_int_equal(wrong->ups, 0);

	opt.client_id = "test-auth-anon";
	opt.username = NULL;
	opt.password = NULL;
	client_start(f, anon, &opt);
	WAIT_FOR(f, 5000, anon->downs == 1);
	assert_non_null(strstr(anon->why, "not authorised"));

	opt.client_id = "test-auth-right";
	opt.username = "bootstrapd";
	opt.password = "s3cret";
	client_start(f, right, &opt);
	WAIT_FOR(f, 5000, right->ups == 1);
	/* The refused client keeps retrying without reporting each refusal. */
	run_for(f, 800);
	assert_int_equal(wrong->downs, 1);
	assert_int_equal(wrong->ups, 0);
	assert_int_equal(right->downs, 0);
}

static void expect_rejected(struct fixture *f, const struct mqtt_options *opt, const char *want)
{
	char *cause = NULL;
	struct mqtt *m = mqtt_new(f->base, opt, &callbacks, NULL, &cause);

	if (m != NULL) {
		mqtt_free(m);
		fail_msg("accepted: %s", opt->url);
	}
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("%s: cause \"%s\" does not mention \"%s\"", opt->url, cause, want);
	free(cause);
}

static void expect_accepted(struct fixture *f, const char *url)
{
	struct mqtt_options opt = { .url = url };
	char *cause = NULL;
	struct mqtt *m = mqtt_new(f->base, &opt, &callbacks, NULL, &cause);

	if (m == NULL)
		fail_msg("rejected %s: %s", url, cause != NULL ? cause : "?");
	mqtt_free(m);
}

static void test_bad_options(void **state)
{
	struct fixture *f = *state;
	struct mqtt_options opt = { .url = "ftp://x" };

	expect_rejected(f, &opt, "mqtt://");
	opt.url = "mqtt://:0";
	expect_rejected(f, &opt, "no host");
	opt.url = "mqtt://";
	expect_rejected(f, &opt, "no host");
	opt.url = NULL;
	expect_rejected(f, &opt, "no broker URL");
	opt.url = "mqtt://broker:0";
	expect_rejected(f, &opt, "port");
	opt.url = "mqtt://broker:65536";
	expect_rejected(f, &opt, "port");
	opt.url = "mqtt://broker:";
	expect_rejected(f, &opt, "port");
	opt.url = "mqtt://broker:1883/x";
	expect_rejected(f, &opt, "unexpected");
	opt.url = "mqtt://[::1";
	expect_rejected(f, &opt, "IPv6");
	opt.url = "mqtt://[nothex]:1883";
	expect_rejected(f, &opt, "IPv6");
	opt.url = "mqtt://bro ker";
	expect_rejected(f, &opt, "host");
	{
		char *cause = NULL;

		opt.url = "mqtt://user:hunter2@broker";
		assert_null(mqtt_new(f->base, &opt, &callbacks, NULL, &cause));
		assert_non_null(cause);
		assert_null(strstr(cause, "hunter2"));
		free(cause);
	}
	opt.url = "mqtt://broker";
	opt.ca_file = "/etc/hostname";
	expect_rejected(f, &opt, "mqtts://");
	opt.url = "mqtts://broker";
	opt.ca_file = "/nonexistent/ca.pem";
	expect_rejected(f, &opt, "/nonexistent/ca.pem");
	opt.ca_file = NULL;
	opt.cert_file = "/etc/hostname";
	expect_rejected(f, &opt, "together");
	opt.cert_file = NULL;
	opt.password = "pw";
	expect_rejected(f, &opt, "username");
	opt.password = NULL;
	opt.keepalive = 2;
	expect_rejected(f, &opt, "keepalive");
	/* A NULL cause is fine too. */
	opt.url = "ftp://x";
	assert_null(mqtt_new(f->base, &opt, &callbacks, NULL, NULL));

	expect_accepted(f, "mqtt://broker");
	expect_accepted(f, "mqtt://broker.example.com:1883/");
	expect_accepted(f, "mqtts://127.0.0.1:65535");
	expect_accepted(f, "mqtt://[::1]");
	expect_accepted(f, "mqtts://[2001:db8::1]:8883");
	mqtt_free(NULL);
}

static void test_refused_free_in_callback(void **state)
{
	struct fixture *f = *state;
	struct client *c = &f->clients[0];
	struct mqtt_options opt = { .client_id = "test-refused" };
	char url[64];

	snprintf(url, sizeof(url), "mqtt://127.0.0.1:%d", free_port());
	opt.url = url;
	c->free_on_down = true;
	client_start(f, c, &opt);
	WAIT_FOR(f, 3000, c->freed);
	assert_non_null(strstr(c->why, "refused"));
	run_for(f, 700);
	assert_int_equal(c->calls_after_free, 0);
	assert_int_equal(c->downs, 1);
}

/* Makes a CA and a server certificate for 127.0.0.1 in F's directory. */
static bool make_certificates(struct fixture *f)
{
	char openssl[256], ca_key[128], ca[128], key[128], csr[128], cert[128], ext[128],
		log[128], serial[128];
	FILE *fp;

	if (!find_program("openssl", openssl, sizeof(openssl)))
		return false;
	snprintf(ca_key, sizeof(ca_key), "%s/ca.key", f->dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", f->dir);
	snprintf(key, sizeof(key), "%s/server.key", f->dir);
	snprintf(csr, sizeof(csr), "%s/server.csr", f->dir);
	snprintf(cert, sizeof(cert), "%s/server.pem", f->dir);
	snprintf(ext, sizeof(ext), "%s/server.ext", f->dir);
	snprintf(serial, sizeof(serial), "%s/ca.srl", f->dir);
	snprintf(log, sizeof(log), "%s/openssl.log", f->dir);
	fp = fopen(ext, "w");
	assert_non_null(fp);
	fprintf(fp, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
	assert_int_equal(fclose(fp), 0);
	{
		char *argv[] = { openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key, "-out", ca,
			"-days", "2", "-subj", "/CN=bootstrapd test CA", NULL };

		assert_true(run_command(argv, log));
	}
	{
		char *argv[] = { openssl, "req", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr,
			"-subj", "/CN=127.0.0.1", NULL };

		assert_true(run_command(argv, log));
	}
	{
		char *argv[] = { openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
			"-CAcreateserial", "-CAserial", serial, "-out", cert, "-days", "2",
			"-extfile", ext, NULL };

		assert_true(run_command(argv, log));
	}
	return true;
}

static void test_tls(void **state)
{
	struct fixture *f = *state;
	struct broker *b = &f->brokers[0];
	struct client *c = &f->clients[0], *untrusting = &f->clients[1];
	struct mqtt_options opt = { .client_id = "test-tls" };
	char extra[512], ca[128];
	int mid;

	require_mosquitto();
	if (!make_certificates(f)) {
		print_message("openssl not found: cannot test mqtts://\n");
		skip();
	}
	snprintf(ca, sizeof(ca), "%s/ca.pem", f->dir);
	snprintf(extra, sizeof(extra), "cafile %s\ncertfile %s/server.pem\nkeyfile %s/server.key\n",
		ca, f->dir, f->dir);
	broker_start(f, b, "tls", extra);
	opt.url = url_of(b, "mqtts");
	opt.ca_file = ca;
	client_start(f, c, &opt);
	WAIT_FOR(f, 5000, c->ups == 1);
	mid = mqtt_publish(c->m, NOTIFY_TOPIC, NOTIFY_PAYLOAD, strlen(NOTIFY_PAYLOAD));
	assert_true(mid > 0);
	WAIT_FOR(f, 3000, c->nmids == 1);
	assert_int_equal(c->mids[0], mid);

	/* The system's CAs do not know this one. */
	opt.client_id = "test-tls-untrusting";
	opt.ca_file = NULL;
	client_start(f, untrusting, &opt);
	WAIT_FOR(f, 5000, untrusting->downs == 1);
	assert_int_equal(untrusting->ups, 0);
	assert_non_null(strstr(untrusting->why, "TLS"));
	assert_int_equal(c->downs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_free_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_across_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
	};
	const char *env = getenv("MOSQUITTO");

	/* libmosquitto writes TLS records with write(): a dead peer must not
	 * kill the test (the daemon ignores SIGPIPE the same way). */
	signal(SIGPIPE, SIG_IGN);
	atexit(kill_everything);
	if (env != NULL && env[0] != '\0')
		snprintf(mosquitto_bin, sizeof(mosquitto_bin), "%s", env);
	else if (!find_program("mosquitto", mosquitto_bin, sizeof(mosquitto_bin)))
		mosquitto_bin[0] = '\0';
	if (mosquitto_bin[0] != '\0' && access(mosquitto_bin, X_OK) != 0)
		mosquitto_bin[0] = '\0';
	if (getenv("MQTT_TEST_DEBUG") != NULL)
		log_set_level(LOG_DEBUG);
	else
		log_set_level(LOG_ERROR);
	mqtt_global_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
