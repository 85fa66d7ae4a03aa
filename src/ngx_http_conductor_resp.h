/*
 * Redis commands in RESP (an array of bulk strings), written straight into
 * the connection's output buffer.  hiredis reads the replies; its command
 * formatter prints every length with sprintf into a buffer of its own,
 * which made a fleet push of ~30 arguments cost ~20,000 instructions (see
 * bench/README.md).  No nginx include: unit tested on its own.
 */

#ifndef _NGX_HTTP_CONDUCTOR_RESP_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_RESP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* room for a signed 64-bit integer in decimal */
#define NGX_HTTP_CONDUCTOR_RESP_INT_LEN  20

/* the bytes the command takes */
size_t ngx_http_conductor_resp_len(size_t argc, const size_t *argvlen);

/* writes it at p (resp_len bytes of room), returns the end */
unsigned char *ngx_http_conductor_resp_write(unsigned char *p, size_t argc,
    const char **argv, const size_t *argvlen);

/* n in decimal at p, returns the end */
unsigned char *ngx_http_conductor_resp_int(unsigned char *p, int64_t n);


#endif /* _NGX_HTTP_CONDUCTOR_RESP_H_INCLUDED_ */
