/*
 * kafka-produce: a line-oriented test and demo producer. It reads
 * "KEY<TAB>VALUE" lines from a file or stdin and produces one Kafka message
 * per line to one topic; a line without a value ("KEY<TAB>" or just "KEY")
 * produces a tombstone (NULL value, not an empty one). Lines starting with
 * '#' are comments; "@partition N" sends the following lines to partition N
 * and "@partition auto" gives the choice back to the key (librdkafka's
 * default partitioner). It waits for every delivery report (bounded by
 * --timeout-ms), reports each failed message with its line number and key
 * on stderr, prints "PRODUCED <delivered count>" on stdout and exits 0 only
 * if every message was delivered (and every directive was valid).
 *
 * The producer is idempotent, so retries after broker faults neither
 * reorder nor duplicate messages within a partition.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* getline(); normally already set by the build */
#endif

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* Default bound on waiting for outstanding deliveries at the end. */
#define DEFAULT_TIMEOUT_MS 30000

/* Delivery counters, updated by the delivery report callback, which runs
 * on this (the only application) thread inside rd_kafka_poll/flush. */
struct counts {
  long delivered;
  long failed;
};

/*
 * Delivery report callback: counts the message as delivered or failed and,
 * on failure, prints "line N key K: reason" on stderr. The line number
 * travels as the message's opaque pointer.
 */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  struct counts *c = opaque;

  (void)rk;
  if (!m->err) {
    c->delivered++;
    return;
  }
  c->failed++;
  fprintf(stderr, "kafka-produce: line %lu key '%.*s': delivery failed: %s\n",
          (unsigned long)(uintptr_t)m->_private, (int)m->key_len,
          m->key ? (const char *)m->key : "", rd_kafka_err2str(m->err));
}

/*
 * Parses the whole of s as a decimal integer in [min, max] into *out.
 * Returns 0 on success, -1 (leaving *out untouched) otherwise.
 */
static int parse_long(const char *s, long min, long max, long *out) {
  char *end = NULL;
  long v;

  if (!s || !*s) return -1;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

/*
 * Applies an "@..." directive line to *partition. Understood:
 * "@partition N" (N >= 0) and "@partition auto" (RD_KAFKA_PARTITION_UA).
 * Returns 0 on success, -1 after printing why on stderr.
 */
static int apply_directive(const char *line, unsigned long lineno, int32_t *partition) {
  static const char prefix[] = "@partition ";
  const char *arg;
  long p;

  if (strncmp(line, prefix, sizeof(prefix) - 1) != 0) {
    fprintf(stderr,
            "kafka-produce: line %lu: unknown directive "
            "'%s' (expected '@partition N|auto')\n",
            lineno, line);
    return -1;
  }
  arg = line + sizeof(prefix) - 1;
  while (*arg == ' ' || *arg == '\t')
    arg++;
  if (!strcmp(arg, "auto")) {
    *partition = RD_KAFKA_PARTITION_UA;
    return 0;
  }
  if (parse_long(arg, 0, INT32_MAX, &p) != 0) {
    fprintf(stderr,
            "kafka-produce: line %lu: bad partition "
            "'%s'\n",
            lineno, arg);
    return -1;
  }
  *partition = (int32_t)p;
  return 0;
}

/*
 * Enqueues one message: key (NULL when keylen is 0), value (NULL for a
 * tombstone), to topic/partition (RD_KAFKA_PARTITION_UA: the partitioner
 * decides). Key and value are copied. While the local queue is full it
 * serves delivery reports and retries. Returns 0 if enqueued (delivery is
 * reported later by on_delivery), -1 after printing why on stderr.
 */
static int produce_one(rd_kafka_t *rk, const char *topic, int32_t partition, const char *key,
                       size_t keylen, const char *value, size_t valuelen, unsigned long lineno) {
  rd_kafka_resp_err_t err;

  for (;;) {
    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_KEY(keylen ? key : NULL, keylen),
                            RD_KAFKA_V_VALUE((void *)value, value ? valuelen : 0),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)lineno), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
    rd_kafka_poll(rk, 100); /* make room: serve deliveries */
  }
  if (err) {
    fprintf(stderr, "kafka-produce: line %lu key '%.*s': %s\n", lineno, (int)keylen, key,
            rd_kafka_err2str(err));
    return -1;
  }
  rd_kafka_poll(rk, 0);
  return 0;
}

/* Prints the usage text on f. */
static void usage(FILE *f) {
  fprintf(f, "usage: kafka-produce --bootstrap B --topic T [--partition N]"
             "\n"
             "                     [--compression zstd|lz4|none] "
             "[--file PATH|-] [--timeout-ms MS]\n"
             "Input lines: KEY<TAB>VALUE, KEY<TAB> or KEY (tombstone), "
             "#comment,\n"
             "             @partition N, @partition auto\n");
}

/*
 * Parses the options, produces every input line and waits for the
 * deliveries. Exit status: 0 if every message line was delivered and there
 * were no invalid lines; 1 otherwise (including usage and setup errors).
 * "PRODUCED <n>" (n = delivered messages) is printed whenever producing
 * started.
 */
int main(int argc, char **argv) {
  static const struct option opts[] = {{"bootstrap", required_argument, NULL, 'b'},
                                       {"topic", required_argument, NULL, 't'},
                                       {"partition", required_argument, NULL, 'p'},
                                       {"compression", required_argument, NULL, 'c'},
                                       {"file", required_argument, NULL, 'f'},
                                       {"timeout-ms", required_argument, NULL, 'T'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *bootstrap = NULL;
  const char *topic = NULL;
  const char *compression = "none";
  const char *path = "-";
  int32_t partition = RD_KAFKA_PARTITION_UA;
  long timeout_ms = DEFAULT_TIMEOUT_MS;
  struct counts counts = {0, 0};
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_t *rk = NULL;
  FILE *in = NULL;
  char *line = NULL;
  size_t linecap = 0;
  unsigned long lineno = 0;
  long enqueued = 0;  /* messages handed to librdkafka */
  long bad_lines = 0; /* bad directives, enqueue failures */
  int started = 0;
  char errstr[512];
  int exit_code = 1;
  ssize_t n;
  long v;
  int opt;

  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (opt) {
    case 'b': bootstrap = optarg; break;
    case 't': topic = optarg; break;
    case 'p':
      if (parse_long(optarg, 0, INT32_MAX, &v) != 0) {
        fprintf(stderr, "kafka-produce: --partition "
                        "must be >= 0\n");
        goto cleanup;
      }
      partition = (int32_t)v;
      break;
    case 'c': compression = optarg; break;
    case 'f': path = optarg; break;
    case 'T':
      if (parse_long(optarg, 1, INT_MAX, &timeout_ms) != 0) {
        fprintf(stderr, "kafka-produce: --timeout-ms "
                        "must be >= 1\n");
        goto cleanup;
      }
      break;
    case 'h':
      usage(stdout);
      exit_code = 0;
      goto cleanup;
    default: usage(stderr); goto cleanup;
    }
  }
  if (!bootstrap || !topic || optind != argc) {
    usage(stderr);
    goto cleanup;
  }
  if (strcmp(compression, "zstd") && strcmp(compression, "lz4") && strcmp(compression, "none")) {
    fprintf(stderr, "kafka-produce: --compression must be zstd, "
                    "lz4 or none\n");
    goto cleanup;
  }

  if (!strcmp(path, "-")) {
    in = stdin;
  } else if (!(in = fopen(path, "r"))) {
    fprintf(stderr, "kafka-produce: %s: %s\n", path, strerror(errno));
    goto cleanup;
  }

  conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "compression.codec", compression, errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
      /* events can be a few hundred KB */
      rd_kafka_conf_set(conf, "message.max.bytes", "10000000", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK) {
    fprintf(stderr, "kafka-produce: config: %s\n", errstr);
    goto cleanup;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_opaque(conf, &counts);
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    fprintf(stderr, "kafka-produce: rd_kafka_new: %s\n", errstr);
    goto cleanup;
  }
  conf = NULL; /* owned by rk now */
  started = 1;

  while ((n = getline(&line, &linecap, in)) >= 0) {
    char *tab;
    const char *value = NULL; /* NULL: tombstone */
    size_t keylen, valuelen = 0;

    lineno++;
    /* Strip the line end (LF or CRLF). */
    if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
    if (n == 0 || line[0] == '#') continue;
    if (line[0] == '@') {
      if (apply_directive(line, lineno, &partition) != 0) bad_lines++;
      continue;
    }
    tab = memchr(line, '\t', (size_t)n);
    if (tab) {
      keylen = (size_t)(tab - line);
      if (tab + 1 < line + n) {
        value = tab + 1;
        valuelen = (size_t)(line + n - value);
      }
    } else {
      keylen = (size_t)n;
    }
    if (produce_one(rk, topic, partition, line, keylen, value, valuelen, lineno) == 0)
      enqueued++;
    else
      bad_lines++;
  }
  if (ferror(in)) {
    fprintf(stderr, "kafka-produce: reading %s: %s\n", path, strerror(errno));
    bad_lines++;
  }

  if (rd_kafka_flush(rk, (int)timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr,
            "kafka-produce: %d message(s) not delivered "
            "within %ld ms; purging\n",
            rd_kafka_outq_len(rk), timeout_ms);
    /* Fail what is left, so every key is reported. */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk, 5000);
  }
  if (counts.delivered == enqueued && counts.failed == 0 && bad_lines == 0) exit_code = 0;

cleanup:
  if (started) {
    printf("PRODUCED %ld\n", counts.delivered);
    fflush(stdout);
  }
  if (rk) rd_kafka_destroy(rk);
  if (conf) rd_kafka_conf_destroy(conf);
  if (in && in != stdin) fclose(in);
  free(line);
  return exit_code;
}
