/*
 * arena.h - a bump allocator for objects that live and die together (a
 * parsed JSON document, a model's strings). Freeing the arena frees
 * everything allocated from it; there is no per-object free.
 */
#ifndef TDM_ARENA_H
#define TDM_ARENA_H

#include <stddef.h>

typedef struct tdm__arena_block tdm__arena_block;

typedef struct tdm__arena {
  tdm__arena_block *head;
  size_t block_size;
} tdm__arena;

void tdm__arena_init(tdm__arena *arena, size_t block_size);

/* Zeroed, 16-byte aligned memory valid until tdm__arena_free; NULL on OOM. */
void *tdm__arena_alloc(tdm__arena *arena, size_t size);

/* A NUL-terminated copy of s[0..n) in the arena; NULL on OOM. */
char *tdm__arena_strndup(tdm__arena *arena, const char *s, size_t n);

void tdm__arena_free(tdm__arena *arena);

#endif /* TDM_ARENA_H */
