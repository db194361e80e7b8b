/*
 * demo_broker.c - embedded mock Kafka cluster with the demo catalog
 * (see demo_broker.h).
 */
#include "demo_broker.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "event_encode.h"
#include "log.h"
#include "xalloc.h"

struct demo_broker {
  rd_kafka_t *rk; /* owns the mock cluster; also the seeding producer */
  rd_kafka_mock_cluster_t *mc;
  const char *topic;
  size_t failed;
};

static void produce_record(struct cat_hdr *rec, void *arg) {
  struct demo_broker *b = arg;
  char *key, *value;
  if (event_encode(rec, &key, &value) == 0) {
    if (rd_kafka_producev(b->rk, RD_KAFKA_V_TOPIC(b->topic), RD_KAFKA_V_KEY(key, strlen(key)),
                          RD_KAFKA_V_VALUE(value, strlen(value)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_END) == 0)
      value = NULL; /* librdkafka frees it */
    else
      b->failed++;
    free(key);
    free(value);
  }
  model_free(rec);
}

struct demo_broker *demo_broker_start(const char *topic, int partitions, char *bootstrap,
                                      size_t cap) {
  char err[256];
  struct demo_broker *b = xcalloc(1, sizeof *b);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
  b->topic = topic;
  if ((b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)) == NULL) {
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  if ((b->mc = rd_kafka_mock_cluster_new(b->rk, 1)) == NULL) goto fail;
  rd_kafka_mock_topic_create(b->mc, topic, partitions, 1);
  snprintf(bootstrap, cap, "%s", rd_kafka_mock_cluster_bootstraps(b->mc));
  /* The seeding producer talks to its own mock cluster like any client. */
  rd_kafka_conf_t *pc = rd_kafka_conf_new();
  rd_kafka_t *prod = NULL;
  if (rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, err, sizeof err) != 0 ||
      (prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err)) == NULL) {
    rd_kafka_conf_destroy(pc);
    goto fail;
  }
  rd_kafka_t *owner = b->rk;
  b->rk = prod;
  size_t n = demo_build(produce_record, b);
  rd_kafka_flush(prod, 10000);
  b->rk = owner;
  rd_kafka_destroy(prod);
  log_info("demo broker seeded", LF_S("bootstrap", bootstrap), LF_S("topic", topic),
           LF_I("events", n), LF_I("failed", b->failed));
  return b;
fail:
  log_error("cannot start the demo broker", LF_S("error", err));
  demo_broker_destroy(b);
  return NULL;
}

void demo_broker_destroy(struct demo_broker *b) {
  if (b == NULL) return;
  if (b->mc) rd_kafka_mock_cluster_destroy(b->mc);
  if (b->rk) rd_kafka_destroy(b->rk);
  free(b);
}
