/*
 * arena.c - the bump allocator declared in arena.h. Blocks are chained;
 * a request larger than the block size gets a block of its own.
 */
#include "arena.h"

#include <string.h>

#include "core.h"

struct tdm__arena_block {
  tdm__arena_block *next;
  size_t used;
  size_t size;
  _Alignas(16) unsigned char data[];
};

void tdm__arena_init(tdm__arena *arena, size_t block_size) {
  arena->head = NULL;
  arena->block_size = block_size ? block_size : 65536;
}

void *tdm__arena_alloc(tdm__arena *arena, size_t size) {
  size = (size + 15) & ~(size_t)15;
  tdm__arena_block *b = arena->head;
  if (b == NULL || b->size - b->used < size) {
    size_t block = size > arena->block_size ? size : arena->block_size;
    b = tdm__malloc(sizeof *b + block);
    if (b == NULL) return NULL;
    b->size = block;
    b->used = 0;
    b->next = arena->head;
    arena->head = b;
  }
  void *p = b->data + b->used;
  b->used += size;
  memset(p, 0, size);
  return p;
}

char *tdm__arena_strndup(tdm__arena *arena, const char *s, size_t n) {
  char *copy = tdm__arena_alloc(arena, n + 1);
  if (copy == NULL) return NULL;
  memcpy(copy, s, n);
  copy[n] = '\0';
  return copy;
}

void tdm__arena_free(tdm__arena *arena) {
  tdm__arena_block *b = arena->head;
  while (b != NULL) {
    tdm__arena_block *next = b->next;
    tdm__free(b);
    b = next;
  }
  arena->head = NULL;
}
