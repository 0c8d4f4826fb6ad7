/*
 * sha256.c - SHA-256 for model versions and run manifests, by OpenSSL's
 * libcrypto (Debian's libssl-dev), which uses the CPU's SHA extensions or
 * vector units: hashing a batch run's input and output must not cost more
 * than parsing them. The low-level SHA256_* calls need no allocation, so
 * a context lives on the stack or inside another struct.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <string.h>

#include "core.h"

_Static_assert(sizeof(((tdm__sha256 *)0)->opaque) >= sizeof(SHA256_CTX),
               "tdm__sha256 must hold OpenSSL's SHA256_CTX");

void tdm__sha256_init(tdm__sha256 *ctx) {
  SHA256_Init((SHA256_CTX *)(void *)ctx->opaque);
}

void tdm__sha256_update(tdm__sha256 *ctx, const void *data, size_t n) {
  if (n > 0) SHA256_Update((SHA256_CTX *)(void *)ctx->opaque, data, n);
}

void tdm__sha256_final_hex(tdm__sha256 *ctx, char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, (SHA256_CTX *)(void *)ctx->opaque);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
    hex[2 * i] = digits[digest[i] >> 4];
    hex[2 * i + 1] = digits[digest[i] & 15];
  }
  hex[64] = '\0';
}

void tdm__sha256_hex(const void *data, size_t n, char hex[65]) {
  tdm__sha256 ctx;
  tdm__sha256_init(&ctx);
  tdm__sha256_update(&ctx, data, n);
  tdm__sha256_final_hex(&ctx, hex);
}
