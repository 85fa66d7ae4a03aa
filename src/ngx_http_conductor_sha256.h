/*
 * SHA-256 (FIPS 180-4) of a client key: the gateway keeps and compares
 * digests, never the keys.  No nginx include: unit tested on its own.
 */

#ifndef _NGX_HTTP_CONDUCTOR_SHA256_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_SHA256_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_CONDUCTOR_SHA256_LEN  32


void ngx_http_conductor_sha256(const unsigned char *data, size_t len,
    unsigned char digest[NGX_HTTP_CONDUCTOR_SHA256_LEN]);

/* 1 when a and b are equal; its time depends on neither */
int ngx_http_conductor_digest_equal(const unsigned char *a,
    const unsigned char *b);


#endif /* _NGX_HTTP_CONDUCTOR_SHA256_H_INCLUDED_ */
