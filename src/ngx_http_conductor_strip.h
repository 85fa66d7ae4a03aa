/*
 * Taking the usage-only chunk out of an OpenAI chat or completions stream,
 * for a client that did not ask for it (the gateway did, to count usage).
 * No nginx include: unit tested and fuzzed on its own.
 *
 * The chunk is known by its structure, not by a byte pattern: a "data:"
 * line whose JSON has a top-level "choices" that is an empty array and a
 * "usage" that is an object, whatever the spacing, key order, other
 * members or line ends (LF, CRLF, CR).  That line and the blank line that
 * ends its event are removed; every other byte goes on unchanged, in
 * order.  A usage riding on a chunk with choices is never removed.
 *
 * Cost: a complete line is only looked at when it holds "[" and "]" with
 * nothing but blanks between them (memchr for "]", then a look back); only
 * such a candidate is parsed.  The bytes of a line that is not complete
 * yet are copied into the scanner (a usage-only chunk could be cut
 * anywhere); a line over held_max - 2 bytes (its terminator not counted)
 * is too long to be the chunk and goes on as it comes.
 *
 * The caller passes a piece at a time; the scanner tells what to send with
 * emit(): own == 0 is a range of the piece being fed (the caller may send
 * it without copying), own == 1 is the scanner's own copy of a line that
 * began in an earlier piece (valid during the call only).  Ranges of one
 * piece come in order, and a piece gives at most one own range, first.
 */

#ifndef _NGX_HTTP_CONDUCTOR_STRIP_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_STRIP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef void (*ngx_http_conductor_strip_emit_pt)(void *data,
    const unsigned char *p, size_t len, int own);


typedef struct {
    ngx_http_conductor_strip_emit_pt  emit;
    void                             *data;

    unsigned char                    *held;       /* the open line */
    size_t                            held_len;
    size_t                            held_max;

    uint64_t                          removed;    /* chunks taken out */

    unsigned                          long_line:1;  /* passing one on */
    unsigned                          cr:1;         /* a CR ended a piece */
    unsigned                          cr_dropped:1; /* ... of a removed line */
    unsigned                          drop_blank:1; /* end of a removed event */
} ngx_http_conductor_strip_t;


/* buf of size bytes holds the open line (at least 64 bytes) */
void ngx_http_conductor_strip_init(ngx_http_conductor_strip_t *s,
    unsigned char *buf, size_t size, ngx_http_conductor_strip_emit_pt emit,
    void *data);

void ngx_http_conductor_strip_feed(ngx_http_conductor_strip_t *s,
    const unsigned char *p, size_t len);

/*
 * The end of the stream: an open line goes on as it came (keep 1), or is
 * dropped (keep 0: the stream was cut and an error event follows).
 */
void ngx_http_conductor_strip_finish(ngx_http_conductor_strip_t *s,
    int keep);

/* 1 when the data line (its terminator excluded) is a usage-only chunk */
int ngx_http_conductor_strip_usage_line(const unsigned char *p, size_t len);


#endif /* _NGX_HTTP_CONDUCTOR_STRIP_H_INCLUDED_ */
