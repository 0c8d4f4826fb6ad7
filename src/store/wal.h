/*
 * wal.h - an append-only write-ahead log of records (a sequence number and
 * bytes) in segment files, for the live runner's events: appending a group
 * of records costs one write and one fdatasync, which is what each
 * acknowledgement waits for. Segments are preallocated, so a sync flushes
 * data, not file sizes. Reading back stops at the first record that is
 * not whole (a torn write at a crash): everything before it is intact,
 * checked by a CRC-32C per record.
 */
#ifndef TDM_WAL_H
#define TDM_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/core.h"

typedef struct tdm__wal tdm__wal;

/* Opens the log `name` in directory `dir` (segments dir/name.N.wal),
 * creating the directory if needed. New records go to a new segment. */
int tdm__wal_open(const char *dir, const char *name, tdm__wal **out,
                  tdm_error *err);
void tdm__wal_close(tdm__wal *wal);

/* Calls fn for every whole record of every segment, oldest first. A torn
 * record at the end of the newest segment before this open ends it; one
 * anywhere else is corruption (TDM_EPARSE). Each earlier segment is then
 * cut to its whole records (removed when it has none), so that restarts
 * without a snapshot round do not pile up preallocated segments. */
int tdm__wal_replay(tdm__wal *wal,
                    int (*fn)(void *ctx, uint64_t seq, const void *data,
                              size_t len),
                    void *ctx, tdm_error *err);

/* One record to append. */
typedef struct tdm__wal_record {
  uint64_t seq;
  const void *data;
  size_t len;
} tdm__wal_record;

/* Appends the records in one write and syncs them to disk. */
int tdm__wal_append(tdm__wal *wal, const tdm__wal_record *records, size_t n,
                    tdm_error *err);

/* Starts a new segment; later records go there. Returns its number. It
 * is the segment tdm__wal_prepare made, when there is one (then nothing
 * is created or synced here); a rotation while tdm__wal_prepare runs waits
 * for it. */
int tdm__wal_rotate(tdm__wal *wal, uint64_t *segment, tdm_error *err);

/* Makes the next segment ahead (created, preallocated and synced), for
 * the next rotation, and may run in another thread than the appends and
 * rotations: the only functions of a log that may run at the same time as
 * another are this one, tdm__wal_has_spare and tdm__wal_drop_before
 * beside tdm__wal_append or tdm__wal_rotate. Does nothing when the next
 * segment is ready. */
int tdm__wal_prepare(tdm__wal *wal, tdm_error *err);

/* Whether the next segment is made or being made (tdm__wal_prepare). */
int tdm__wal_has_spare(tdm__wal *wal);

/* Deletes every segment numbered below `segment` (their records are
 * saved elsewhere). */
int tdm__wal_drop_before(tdm__wal *wal, uint64_t segment, tdm_error *err);

/* CRC-32C (Castagnoli) of data, continuing from crc (0 to start): with
 * the CPU's crc32 instruction when it has one (x86-64 SSE 4.2). */
uint32_t tdm__crc32c(uint32_t crc, const void *data, size_t len);
/* The same, a byte at a time from a table: the reference the fast path
 * is tested against (tests/unit/test_wal.c). */
uint32_t tdm__crc32c_reference(uint32_t crc, const void *data, size_t len);

#endif /* TDM_WAL_H */
