/*
 * kafka-mock-host: hosts librdkafka's in-process mock Kafka cluster
 * (rd_kafka_mock_cluster_new) in a process of its own, so that catalogd,
 * kcat, kafka-produce and test drivers reach it over TCP exactly like a real
 * broker. It creates the requested topics, announces the bootstrap string
 * ("BOOTSTRAP host:port,..." on stdout and, optionally, atomically in a file),
 * then serves a line-oriented command protocol on stdin (down/up/rtt/leader
 * for fault injection, partitions/watermarks/create for inspection and setup,
 * quit). Every command is answered with exactly one line starting "OK" or
 * "ERR <why>". EOF on stdin, "quit", SIGTERM or SIGINT end it cleanly with
 * exit status 0; start-up failures exit with status 1.
 *
 * The mock keeps data in memory only: restarting this process loses every
 * message. See tests/tools/README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* ppoll(); normally already set by the build */
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Timeout for the metadata and watermark queries the host makes itself. */
#define QUERY_TIMEOUT_MS 5000
/* Longest accepted command line, newline included. */
#define CMD_LINE_MAX 4096

/* Everything the command handlers need. */
struct host {
  rd_kafka_t *rk;              /* handle that owns the mock cluster */
  rd_kafka_mock_cluster_t *mc; /* the cluster; broker ids 1..nbrokers */
  rd_kafka_t *client;          /* consumer on the mock's bootstrap,
                                * for metadata and watermarks */
  const char *bootstraps;      /* owned by mc */
  int nbrokers;
};

/* Set by the SIGTERM/SIGINT handler; checked by the main loop. */
static volatile sig_atomic_t got_signal;

/*
 * Signal handler for SIGTERM and SIGINT: records the signal number only.
 * The signals are blocked except while the main loop waits in ppoll(), so
 * the handler can only interrupt that wait.
 */
static void on_signal(int sig) { got_signal = sig; }

/*
 * Prints one protocol answer line (printf-style, without the trailing
 * newline) on stdout and flushes it, so a driver reading line by line sees
 * it at once. Write errors (e.g. the reader went away) are ignored: the
 * host keeps running until stdin ends or a signal arrives.
 */
__attribute__((format(printf, 1, 2))) static void reply(const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
}

/*
 * Parses the whole of s as a decimal integer in [min, max] into *out.
 * Returns 0 on success, -1 (leaving *out untouched) if s is NULL, empty,
 * has trailing characters or is out of range.
 */
static int parse_int(const char *s, long min, long max, int *out) {
  char *end = NULL;
  long v;

  if (!s || !*s) return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max) return -1;
  *out = (int)v;
  return 0;
}

/*
 * Writes "<bootstraps>\n" to path atomically: the content goes to
 * "<path>.tmp.<pid>" in the same directory, is flushed and fsync'ed, and is
 * then renamed over path, so a reader polling path sees either no file or
 * the complete line. Returns 0 on success, -1 after printing the reason on
 * stderr (the temporary file is removed in that case).
 */
static int write_bootstrap_file(const char *path, const char *bootstraps) {
  char *tmp = NULL;
  FILE *f = NULL;
  int ret = -1;
  int created = 0;

  if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
    tmp = NULL;
    fprintf(stderr, "kafka-mock-host: out of memory\n");
    goto cleanup;
  }
  f = fopen(tmp, "w");
  if (!f) {
    fprintf(stderr, "kafka-mock-host: %s: %s\n", tmp, strerror(errno));
    goto cleanup;
  }
  created = 1;
  if (fprintf(f, "%s\n", bootstraps) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    fprintf(stderr, "kafka-mock-host: writing %s: %s\n", tmp, strerror(errno));
    goto cleanup;
  }
  if (fclose(f) != 0) {
    f = NULL;
    fprintf(stderr, "kafka-mock-host: closing %s: %s\n", tmp, strerror(errno));
    goto cleanup;
  }
  f = NULL;
  if (rename(tmp, path) != 0) {
    fprintf(stderr, "kafka-mock-host: rename %s -> %s: %s\n", tmp, path, strerror(errno));
    goto cleanup;
  }
  created = 0; /* now it is path, which the caller owns */
  ret = 0;

cleanup:
  if (f) fclose(f);
  if (created) unlink(tmp);
  free(tmp);
  return ret;
}

/*
 * Looks up topic in fresh cluster metadata (a request for all topics, so
 * asking never auto-creates the topic) and stores its partition count in
 * *count. Returns 0 on success; otherwise -1 with a reason in why (at most
 * whylen bytes, NUL-terminated): query failure or timeout, unknown topic,
 * or the topic's own metadata error.
 */
static int topic_partition_count(struct host *h, const char *topic, int *count, char *why,
                                 size_t whylen) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err;
  int ret = -1;
  int i;

  err = rd_kafka_metadata(h->client, 1, NULL, &md, QUERY_TIMEOUT_MS);
  if (err) {
    md = NULL;
    snprintf(why, whylen, "metadata: %s", rd_kafka_err2str(err));
    goto cleanup;
  }
  for (i = 0; i < md->topic_cnt; i++) {
    if (strcmp(md->topics[i].topic, topic) != 0) continue;
    if (md->topics[i].err) {
      snprintf(why, whylen, "%s", rd_kafka_err2str(md->topics[i].err));
      goto cleanup;
    }
    *count = md->topics[i].partition_cnt;
    ret = 0;
    goto cleanup;
  }
  snprintf(why, whylen, "unknown topic %s", topic);

cleanup:
  if (md) rd_kafka_metadata_destroy(md);
  return ret;
}

/*
 * "watermarks <topic>": answers "OK p0:lo-hi p1:lo-hi ..." with the low and
 * high watermark of every partition (high = next offset to be written), or
 * "ERR <why>". All partitions are queried before anything is printed, so the
 * answer is always a single complete line.
 */
static void cmd_watermarks(struct host *h, const char *topic) {
  int64_t *marks = NULL; /* lo/hi pairs, 2 per partition */
  char *line = NULL;
  size_t linelen = 0;
  FILE *out = NULL;
  char why[256];
  int count = 0;
  int p;

  if (topic_partition_count(h, topic, &count, why, sizeof(why)) != 0) {
    reply("ERR %s", why);
    goto cleanup;
  }
  marks = calloc((size_t)count * 2 + 1, sizeof(*marks));
  if (!marks) {
    reply("ERR out of memory");
    goto cleanup;
  }
  for (p = 0; p < count; p++) {
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(h->client, topic, p, &marks[2 * p],
                                                               &marks[2 * p + 1], QUERY_TIMEOUT_MS);
    if (err) {
      reply("ERR partition %d: %s", p, rd_kafka_err2str(err));
      goto cleanup;
    }
  }
  out = open_memstream(&line, &linelen);
  if (!out) {
    reply("ERR out of memory");
    goto cleanup;
  }
  fputs("OK", out);
  for (p = 0; p < count; p++)
    fprintf(out, " p%d:%" PRId64 "-%" PRId64, p, marks[2 * p], marks[2 * p + 1]);
  if (fclose(out) != 0) {
    out = NULL;
    reply("ERR out of memory");
    goto cleanup;
  }
  out = NULL;
  reply("%s", line);

cleanup:
  if (out) fclose(out);
  free(line);
  free(marks);
}

/*
 * Converts a command argument naming a broker into its id, checking it is
 * one of this cluster's brokers (1..nbrokers). Returns 0 with *id set, or
 * -1 after answering "ERR ...".
 */
static int broker_arg(const struct host *h, const char *arg, int *id) {
  if (parse_int(arg, 1, h->nbrokers, id) != 0) {
    reply("ERR broker id must be 1..%d", h->nbrokers);
    return -1;
  }
  return 0;
}

/*
 * Answers "OK" if err is RD_KAFKA_RESP_ERR_NO_ERROR, else "ERR <reason>".
 */
static void reply_err(rd_kafka_resp_err_t err) {
  if (err)
    reply("ERR %s", rd_kafka_err2str(err));
  else
    reply("OK");
}

/*
 * Executes one command line (modified in place by tokenizing) and writes
 * exactly one answer line. Blank lines are ignored without an answer.
 * Returns 1 if the command was "quit", 0 otherwise.
 */
static int handle_command(struct host *h, char *line) {
  const char *sep = " \t\r\n";
  char *save = NULL;
  char *argv[5] = {0};
  char why[256];
  int argc = 0;
  int id, n, part;
  char *tok;

  for (tok = strtok_r(line, sep, &save); tok; tok = strtok_r(NULL, sep, &save)) {
    if (argc == (int)(sizeof(argv) / sizeof(argv[0]))) {
      reply("ERR too many arguments");
      return 0;
    }
    argv[argc++] = tok;
  }
  if (argc == 0) return 0;

#define NEED_ARGS(n, usage)                                                                        \
  do {                                                                                             \
    if (argc != (n) + 1) {                                                                         \
      reply("ERR usage: %s", usage);                                                               \
      return 0;                                                                                    \
    }                                                                                              \
  } while (0)

  if (!strcmp(argv[0], "quit")) {
    NEED_ARGS(0, "quit");
    reply("OK");
    return 1;
  } else if (!strcmp(argv[0], "down")) {
    NEED_ARGS(1, "down <broker_id>");
    if (broker_arg(h, argv[1], &id) == 0) reply_err(rd_kafka_mock_broker_set_down(h->mc, id));
  } else if (!strcmp(argv[0], "up")) {
    NEED_ARGS(1, "up <broker_id>");
    if (broker_arg(h, argv[1], &id) == 0) reply_err(rd_kafka_mock_broker_set_up(h->mc, id));
  } else if (!strcmp(argv[0], "rtt")) {
    NEED_ARGS(2, "rtt <broker_id> <ms>");
    if (broker_arg(h, argv[1], &id) != 0) return 0;
    if (parse_int(argv[2], 0, INT_MAX, &n) != 0)
      reply("ERR rtt must be a number of ms >= 0");
    else
      reply_err(rd_kafka_mock_broker_set_rtt(h->mc, id, n));
  } else if (!strcmp(argv[0], "leader")) {
    NEED_ARGS(3, "leader <topic> <partition> <broker_id>");
    if (parse_int(argv[2], 0, INT32_MAX, &part) != 0) {
      reply("ERR partition must be >= 0");
      return 0;
    }
    if (broker_arg(h, argv[3], &id) == 0)
      reply_err(rd_kafka_mock_partition_set_leader(h->mc, argv[1], part, id));
  } else if (!strcmp(argv[0], "produce-errors")) {
    /* The next n Produce requests (any client, any topic) fail with
     * TOPIC_AUTHORIZATION_FAILED, an error producers do not retry. */
    NEED_ARGS(1, "produce-errors <count>");
    if (parse_int(argv[1], 1, 100000, &n) != 0) {
      reply("ERR count must be 1..100000");
      return 0;
    }
    rd_kafka_resp_err_t errs[64];
    for (int i = 0; i < 64; i++)
      errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    for (int left = n; left > 0; left -= 64)
      rd_kafka_mock_push_request_errors_array(h->mc, 0 /* ApiKey Produce */,
                                              (size_t)(left < 64 ? left : 64), errs);
    reply("OK");
  } else if (!strcmp(argv[0], "partitions")) {
    NEED_ARGS(1, "partitions <topic>");
    if (topic_partition_count(h, argv[1], &n, why, sizeof(why)) == 0)
      reply("OK %d", n);
    else
      reply("ERR %s", why);
  } else if (!strcmp(argv[0], "create")) {
    NEED_ARGS(2, "create <topic> <partitions>");
    if (parse_int(argv[2], 1, 100000, &n) != 0) {
      reply("ERR partitions must be 1..100000");
      return 0;
    }
    /* The mock cannot change an existing topic's partition
     * count; refuse rather than pretend. */
    if (topic_partition_count(h, argv[1], &part, why, sizeof(why)) == 0) {
      reply("ERR topic %s exists with %d partitions", argv[1], part);
      return 0;
    }
    reply_err(rd_kafka_mock_topic_create(h->mc, argv[1], n, 1));
  } else if (!strcmp(argv[0], "watermarks")) {
    NEED_ARGS(1, "watermarks <topic>");
    cmd_watermarks(h, argv[1]);
  } else if (!strcmp(argv[0], "bootstrap")) {
    NEED_ARGS(0, "bootstrap");
    reply("OK %s", h->bootstraps);
  } else {
    reply("ERR unknown command %s (down, up, rtt, leader, "
          "partitions, create, watermarks, bootstrap, quit)",
          argv[0]);
  }
#undef NEED_ARGS
  return 0;
}

/*
 * Serves commands from stdin until "quit", EOF or SIGTERM/SIGINT (or only
 * waits for a signal when serve_stdin is 0). Reads with read(2) into a
 * fixed buffer and waits with ppoll(2), which is the only place the
 * blocked signals are let through, so a signal can never be missed between
 * checking got_signal and waiting. A line longer than CMD_LINE_MAX is
 * answered "ERR line too long" and skipped. A last line without a newline
 * before EOF is still executed. Returns 0 on a clean end, -1 on a read error.
 */
static int serve(struct host *h, int serve_stdin, const sigset_t *waitmask) {
  char buf[CMD_LINE_MAX];
  size_t len = 0;     /* bytes buffered in buf */
  int discarding = 0; /* inside an over-long line */
  struct pollfd pfd;
  ssize_t r;
  char *nl;

  while (!got_signal) {
    pfd.fd = STDIN_FILENO;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (ppoll(serve_stdin ? &pfd : NULL, serve_stdin ? 1 : 0, NULL, waitmask) < 0) {
      if (errno == EINTR) continue;
      perror("kafka-mock-host: ppoll");
      return -1;
    }
    if (!serve_stdin) continue; /* not reached: only a signal wakes us */
    r = read(STDIN_FILENO, buf + len, sizeof(buf) - len);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      perror("kafka-mock-host: read stdin");
      return -1;
    }
    if (r == 0) { /* EOF: run a final unterminated line */
      if (len > 0 && !discarding) {
        buf[len] = '\0'; /* len < sizeof(buf) */
        handle_command(h, buf);
      }
      return 0;
    }
    len += (size_t)r;
    while ((nl = memchr(buf, '\n', len))) {
      size_t used = (size_t)(nl - buf) + 1;
      int quit = 0;

      *nl = '\0';
      if (discarding)
        discarding = 0;
      else
        quit = handle_command(h, buf);
      memmove(buf, buf + used, len - used);
      len -= used;
      if (quit) return 0;
    }
    if (len == sizeof(buf)) { /* full and no newline */
      if (!discarding) reply("ERR line too long");
      discarding = 1;
      len = 0;
    }
  }
  return 0;
}

/* Prints the usage text on f. */
static void usage(FILE *f) {
  fprintf(f, "usage: kafka-mock-host [--brokers N] [--topic NAME]... "
             "[--partitions P]\n"
             "                       [--bootstrap-file PATH] "
             "[--no-stdin]\n"
             "  --brokers N          mock brokers, ids 1..N (default 1)\n"
             "  --topic NAME         topic to create, repeatable "
             "(default catalog.changes)\n"
             "  --partitions P       partitions per topic (default 3)\n"
             "  --bootstrap-file F   also write the bootstrap string to F "
             "(atomically)\n"
             "  --no-stdin           ignore stdin; run until "
             "SIGTERM/SIGINT\n"
             "Prints 'BOOTSTRAP host:port,...' when ready, then reads "
             "commands on stdin:\n"
             "  down <id> | up <id> | rtt <id> <ms> | "
             "leader <topic> <partition> <id>\n"
             "  partitions <topic> | watermarks <topic> | "
             "create <topic> <partitions>\n"
             "  bootstrap | quit\n");
}

/*
 * Parses the options, starts the mock cluster with its topics, announces
 * the bootstrap string and serves commands. Exit status: 0 after a clean
 * end (quit, EOF, SIGTERM, SIGINT), 1 on bad usage or a start-up failure,
 * or if reading stdin failed.
 */
int main(int argc, char **argv) {
  static const struct option opts[] = {{"brokers", required_argument, NULL, 'b'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"partitions", required_argument, NULL, 'p'},
                                       {"bootstrap-file", required_argument, NULL, 'f'},
                                       {"no-stdin", no_argument, NULL, 'n'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  static const char *default_topic = "catalog.changes";
  struct host h = {0};
  const char **topics = NULL; /* point into argv */
  int ntopics = 0;
  int partitions = 3;
  const char *bootstrap_file = NULL;
  int bootstrap_file_written = 0;
  int serve_stdin = 1;
  rd_kafka_conf_t *conf = NULL;
  struct sigaction sa;
  sigset_t block, waitmask;
  char errstr[512];
  int exit_code = 1;
  int opt, i;

  h.nbrokers = 1;
  topics = calloc((size_t)argc + 1, sizeof(*topics));
  if (!topics) {
    fprintf(stderr, "kafka-mock-host: out of memory\n");
    goto cleanup;
  }
  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (opt) {
    case 'b':
      if (parse_int(optarg, 1, 64, &h.nbrokers) != 0) {
        fprintf(stderr, "kafka-mock-host: --brokers "
                        "must be 1..64\n");
        goto cleanup;
      }
      break;
    case 't':
      if (!*optarg) {
        fprintf(stderr, "kafka-mock-host: empty "
                        "--topic\n");
        goto cleanup;
      }
      topics[ntopics++] = optarg;
      break;
    case 'p':
      if (parse_int(optarg, 1, 100000, &partitions) != 0) {
        fprintf(stderr, "kafka-mock-host: "
                        "--partitions must be "
                        "1..100000\n");
        goto cleanup;
      }
      break;
    case 'f': bootstrap_file = optarg; break;
    case 'n': serve_stdin = 0; break;
    case 'h':
      usage(stdout);
      exit_code = 0;
      goto cleanup;
    default: usage(stderr); goto cleanup;
    }
  }
  if (optind != argc) {
    usage(stderr);
    goto cleanup;
  }
  if (ntopics == 0) topics[ntopics++] = default_topic;

  /* Block SIGTERM/SIGINT before librdkafka starts its threads (they
   * inherit the mask), so the signals are delivered to this thread
   * and only inside ppoll() in serve(). SIGPIPE is ignored: a driver
   * that stops reading answers must not kill the cluster. */
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  if (sigprocmask(SIG_BLOCK, &block, &waitmask) != 0) {
    perror("kafka-mock-host: sigprocmask");
    goto cleanup;
  }
  sigdelset(&waitmask, SIGTERM);
  sigdelset(&waitmask, SIGINT);
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);

  /* Any client handle can own a mock cluster; a bare producer does.
   * It never connects anywhere, so its notice-level warning "No
   * `bootstrap.servers` configured" is noise: log warnings and up. */
  conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "kafka-mock-host: config: %s\n", errstr);
    goto cleanup;
  }
  h.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!h.rk) {
    fprintf(stderr, "kafka-mock-host: rd_kafka_new: %s\n", errstr);
    goto cleanup;
  }
  conf = NULL; /* owned by h.rk now */

  h.mc = rd_kafka_mock_cluster_new(h.rk, h.nbrokers);
  if (!h.mc) {
    fprintf(stderr, "kafka-mock-host: cannot create the mock "
                    "cluster\n");
    goto cleanup;
  }
  h.bootstraps = rd_kafka_mock_cluster_bootstraps(h.mc);

  for (i = 0; i < ntopics; i++) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(h.mc, topics[i], partitions, 1);
    if (err) {
      fprintf(stderr,
              "kafka-mock-host: create topic %s: "
              "%s\n",
              topics[i], rd_kafka_err2str(err));
      goto cleanup;
    }
  }

  /* The query client: metadata and watermarks as any client sees
   * them. No group.id: it never joins a group or assigns. */
  conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", h.bootstraps, errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log.connection.close", "false", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK) {
    fprintf(stderr, "kafka-mock-host: client config: %s\n", errstr);
    goto cleanup;
  }
  h.client = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!h.client) {
    fprintf(stderr, "kafka-mock-host: client: %s\n", errstr);
    goto cleanup;
  }
  conf = NULL;

  if (bootstrap_file) {
    if (write_bootstrap_file(bootstrap_file, h.bootstraps) != 0) goto cleanup;
    bootstrap_file_written = 1;
  }
  printf("BOOTSTRAP %s\n", h.bootstraps);
  fflush(stdout);

  if (serve(&h, serve_stdin, &waitmask) == 0) exit_code = 0;

cleanup:
  /* A stale bootstrap file would point the next reader at a dead
   * port: remove the one this run wrote. */
  if (bootstrap_file_written) unlink(bootstrap_file);
  if (h.client) rd_kafka_destroy(h.client);
  if (h.mc) rd_kafka_mock_cluster_destroy(h.mc);
  if (h.rk) rd_kafka_destroy(h.rk);
  if (conf) rd_kafka_conf_destroy(conf);
  free(topics);
  return exit_code;
}
