/*
 * changelog.h - the entity states of `tandem stream`'s input partitions
 * kept in a compacted Kafka topic, so that a partition's state follows it
 * to whichever instance of the group is assigned it (rebalance, crash,
 * another host).
 *
 * Record format: partition P of the changelog holds the states of input
 * partition P. Each record's key is an entity key; its value is the
 * entity's state as the state directory stores it ([u64 tag][state
 * bytes], tdm__state_map_encode), or null (a tombstone) when the entity
 * left memory. With cleanup.policy=compact Kafka keeps at least the
 * newest record per key, so reading a partition from its start gives
 * every entity's newest state.
 *
 * Checkpoint: a local state directory remembers, in its meta database,
 * how far into the changelog partition its states reflect (the next
 * offset). On assignment only the records after it are read; without one
 * (or when it does not fit the topic any more) the local states are
 * dropped and the whole partition is read.
 *
 * Input position: the states carry the input offset they reflect. Every
 * commit that saves a partition's states ends with a position record
 * (key TDM__POSITION_KEY, value the next input offset as 8 bytes,
 * little-endian) in the same changelog partition, after the entity
 * records, and the local store keeps the same offset in its meta
 * database, written in the transaction of the states. Every event before
 * that offset is in the states and has its output acknowledged; none
 * after it is, except in the states of entities written by a commit that
 * did not finish, whose tags (the input offset after the entity's last
 * applied event) say so. A member that is assigned the partition resumes
 * at that offset, whatever offset the group has committed.
 */
#ifndef TDM_CHANGELOG_H
#define TDM_CHANGELOG_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "../core/core.h"
#include "../pipeline/pipeline.h"
#include "../pipeline/state_dir.h"
#include "../store/store.h"

typedef struct tdm__changelog tdm__changelog;

/*
 * Checks that `topic` exists with at least `partitions` partitions,
 * creating it (cleanup.policy=compact, `partitions` partitions) when it
 * does not and the cluster allows; makes the consumer that restores from
 * it, configured by conf (which it takes). client is a handle of the
 * cluster used for metadata and topic creation.
 */
int tdm__changelog_open(rd_kafka_t *client, rd_kafka_conf_t *conf,
                        const char *topic, int partitions,
                        tdm__changelog **out, tdm_error *err);
void tdm__changelog_close(tdm__changelog *cl);
const char *tdm__changelog_topic(const tdm__changelog *cl);
int tdm__changelog_partitions(const tdm__changelog *cl);

/* The key of a position record: not valid UTF-8, so never an entity key
 * (event fields are JSON strings, which are). */
#define TDM__POSITION_KEY "\xfftandem:input-position"
#define TDM__POSITION_KEY_LEN (sizeof TDM__POSITION_KEY - 1)

/* The value of a position record for input offset next. */
void tdm__position_encode(int64_t next, unsigned char value[8]);

/* Adds to w the local copy of the input position `next`. */
int tdm__position_save(int64_t next, tdm__state_writes *w);

/* The input position the local store's states reflect (-1: none saved). */
int tdm__position_read(tdm__store *store, int64_t *next, tdm_error *err);

/* What a restore did. */
typedef struct tdm__changelog_restore_info {
  int64_t next;     /* the next changelog offset: the new checkpoint */
  int64_t position; /* the input offset the restored states reflect (-1:
                       unknown: no position was ever saved) */
  size_t records;   /* changelog records applied */
  size_t local;     /* entities loaded from the local state directory */
  int from_start;   /* the local states were dropped: read from the start */
  int seed;         /* the local states are to be written to the
                       changelog (it is empty, or an earlier seed did not
                       finish): mark them all dirty */
  double seconds;
} tdm__changelog_restore_info;

/*
 * Makes map (empty) hold partition's states: those of store (NULL: none)
 * where its checkpoint fits, brought up to date from the changelog; the
 * records read are written to store too, with the checkpoint. Errors
 * name the topic, partition and offset.
 */
int tdm__changelog_restore(tdm__changelog *cl, int32_t partition,
                           tdm__state_map *map, tdm__store *store,
                           const char *dir,
                           tdm__changelog_restore_info *info, tdm_error *err);

/* Adds to w the mark that the seed of an empty changelog is done: to go
 * with the checkpoint of the commit that wrote every local state to it. */
int tdm__changelog_seeded(const tdm__changelog *cl, tdm__state_writes *w);

/* Adds to w the put of the checkpoint `next` (the offset after the last
 * changelog record the states written with w reflect). */
int tdm__changelog_checkpoint(const tdm__changelog *cl, int64_t next,
                              tdm__state_writes *w);

#endif /* TDM_CHANGELOG_H */
