/*
 * Incremental Server-Sent-Events line parser for usage accounting.  No
 * nginx include: unit tested and fuzzed on its own.
 *
 * The parser observes a response body fed in arbitrary pieces and calls a
 * handler for every complete "data:" line, together with the name of the
 * current event ("event:" line, remembered until the blank line).  It keeps
 * only the partial current line, in a buffer capped by line_max, and never
 * refers to the caller's buffers after feed() returns: the caller passes
 * every byte on untouched.
 *
 * Lines end in LF, CRLF or CR (a CR and its LF may arrive in different
 * feeds); "data:" with or without the space; comment lines (": ...") and
 * other fields (id, retry) are skipped; a leading UTF-8 BOM is ignored.
 * One handler call per data line: multi-line data of one event is not
 * joined (the LLM APIs put one JSON document on each data line).
 *
 * Over-long lines: a data line longer than line_max is not kept.  Its
 * bytes (the buffered prefix, then the rest as it arrives) go through a
 * JSON structure tracker (the scanner below) that copies out the text of
 * a "usage" object found at the top level of the document or inside its
 * top-level "response" or "message" member; nested counters elsewhere (a
 * tool's usage inside "output") are not taken, and an object longer than
 * usage_max is dropped.  When the line ends the handler is called once
 * per captured object, with a USAGE_* flag instead of DATA.
 *
 * Typical use from a body filter:
 *
 *     ngx_http_conductor_sse_init(&ctx->sse, 256 * 1024,
 *                                 ngx_http_conductor_usage_sse_handler,
 *                                 &ctx->usage);
 *     ngx_http_conductor_sse_set_allocator(&ctx->sse, pool_alloc,
 *                                          pool_free, r->pool);
 *     for each buffer:  ngx_http_conductor_sse_feed(&ctx->sse, pos, len);
 *     on last_buf:      ngx_http_conductor_sse_finish(&ctx->sse);
 *     pool cleanup:     ngx_http_conductor_sse_release(&ctx->sse);
 */

#ifndef _NGX_HTTP_CONDUCTOR_SSE_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_SSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_CONDUCTOR_SSE_LINE_MAX       (256 * 1024)
#define NGX_HTTP_CONDUCTOR_SSE_LINE_MIN       32
#define NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX      (16 * 1024)
#define NGX_HTTP_CONDUCTOR_SSE_EVENT_MAX      64
#define NGX_HTTP_CONDUCTOR_SSE_TYPE_MAX       64
#define NGX_HTTP_CONDUCTOR_SSE_KEY_MAX        8
#define NGX_HTTP_CONDUCTOR_SSE_CAPTURES       4

/* what a handler call carries (line->flags) */
#define NGX_HTTP_CONDUCTOR_SSE_DATA            0x01  /* data line payload */
#define NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP       0x02  /* top-level usage */
#define NGX_HTTP_CONDUCTOR_SSE_USAGE_RESPONSE  0x04  /* response.usage */
#define NGX_HTTP_CONDUCTOR_SSE_USAGE_MESSAGE   0x08  /* message.usage */
#define NGX_HTTP_CONDUCTOR_SSE_USAGE_ONLY                                     \
    (NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP|NGX_HTTP_CONDUCTOR_SSE_USAGE_RESPONSE  \
     |NGX_HTTP_CONDUCTOR_SSE_USAGE_MESSAGE)


typedef struct {
    /*
     * Event name of the current event, event_len 0 when the event has no
     * "event:" line (names over EVENT_MAX bytes are cut there).  For a
     * USAGE_* call without an "event:" line, the data's top-level "type"
     * string is given instead, when one was seen.
     */
    const unsigned char  *event;
    size_t                event_len;

    /*
     * DATA: the payload after "data:" and one optional space.  USAGE_*:
     * the captured object text, "{" to "}".  Valid during the call only.
     */
    const unsigned char  *data;
    size_t                len;
    unsigned              flags;

    /*
     * Stream offsets (bytes fed before): first byte of the event's first
     * line, first byte of this line, end of this line's content (its
     * terminator not included).  Lets a filter locate the bytes of one
     * event across buffers, e.g. to cut a usage-only chunk.
     */
    uint64_t              event_start;
    uint64_t              line_start;
    uint64_t              line_end;
} ngx_http_conductor_sse_line_t;


/* must not feed the parser that calls it */
typedef void (*ngx_http_conductor_sse_handler_pt)(void *data,
    const ngx_http_conductor_sse_line_t *line);

/* returns NULL on failure; the parser then degrades, it never fails */
typedef void *(*ngx_http_conductor_sse_alloc_pt)(void *data, size_t size);
typedef void (*ngx_http_conductor_sse_free_pt)(void *data, void *p);


typedef struct {
    unsigned              flags;    /* NGX_HTTP_CONDUCTOR_SSE_USAGE_* */
    size_t                off;      /* in the capture area */
    size_t                len;
} ngx_http_conductor_sse_capture_t;


/*
 * JSON structure tracker, byte by byte, over one JSON document fed in
 * pieces: tracks strings, escapes, depth and the member keys at depth 1
 * and 2, and copies the text of "usage" objects at the places listed above
 * into a caller's capture area.  It does not validate: any bytes are
 * accepted, garbage only yields no capture.  Public so that a non-stream
 * JSON body can be scanned without buffering it; fields are private.
 */
typedef struct {
    unsigned char                    *cap;
    size_t                            cap_size;
    size_t                            cap_used;
    size_t                            cap_begin;
    size_t                            cap_depth;
    size_t                            depth;

    ngx_http_conductor_sse_capture_t  capture[NGX_HTTP_CONDUCTOR_SSE_CAPTURES];
    size_t                            ncaptures;

    unsigned char                     key[3][NGX_HTTP_CONDUCTOR_SSE_KEY_MAX];
    unsigned char                     key_len[3];
    unsigned char                     kind[3];
    unsigned char                     expect_key[3];

    unsigned char                     type[NGX_HTTP_CONDUCTOR_SSE_TYPE_MAX];
    size_t                            type_len;

    unsigned                          in_string:1;
    unsigned                          escape:1;
    unsigned                          role:2;
    unsigned                          role_depth:2;
    unsigned                          capturing:1;
    unsigned                          cap_full:1;
    unsigned                          cap_flags:4;
    unsigned                          type_ok:1;
} ngx_http_conductor_sse_scan_t;


typedef struct {
    ngx_http_conductor_sse_handler_pt  handler;
    void                              *data;

    ngx_http_conductor_sse_alloc_pt    alloc;
    ngx_http_conductor_sse_free_pt     free;
    void                              *alloc_data;

    unsigned char                     *buf;
    size_t                             size;
    size_t                             len;
    size_t                             line_max;
    size_t                             usage_max;

    uint64_t                           offset;
    uint64_t                           line_start;
    uint64_t                           event_start;

    unsigned char                      event[NGX_HTTP_CONDUCTOR_SSE_EVENT_MAX];
    size_t                             event_len;

    ngx_http_conductor_sse_scan_t      scan;

    /* lines that went over line_max, for the caller's logs */
    uint64_t                           overlong;

    /* lazy mode (set_tail): what was fed, and the tail kept of it */
    uint64_t                           total;     /* bytes fed */
    uint64_t                           data_lines;  /* handler calls */
    uint64_t                           open_from; /* the open line's start */
    unsigned char                     *tail;      /* a ring */
    size_t                             tail_size;
    size_t                             tail_len;
    size_t                             tail_pos;  /* next byte goes there */
    uint64_t                           tail_line; /* a line starts there */

    unsigned                           mode:2;
    unsigned                           cr:1;
    unsigned                           fixed:1;
    unsigned                           in_event:1;
    unsigned                           lazy_full:1;  /* a long open line */
    unsigned                           saw_cr:1;     /* a CR ended a line */
} ngx_http_conductor_sse_t;


/*
 * Prepares a parser; line_max is clamped to at least LINE_MIN, usage_max
 * defaults to USAGE_MAX (the field may be changed before the first feed).
 * The one buffer grows by doubling from 1 KiB to at most
 * max(line_max, usage_max), and only while a line is longer than what it
 * holds.  Memory defaults to malloc/free; an nginx caller sets a pool
 * allocator or a fixed buffer instead, before the first feed.
 */
void ngx_http_conductor_sse_init(ngx_http_conductor_sse_t *sse,
    size_t line_max, ngx_http_conductor_sse_handler_pt handler, void *data);

/* free may be NULL (a pool that frees everything at once) */
void ngx_http_conductor_sse_set_allocator(ngx_http_conductor_sse_t *sse,
    ngx_http_conductor_sse_alloc_pt alloc, ngx_http_conductor_sse_free_pt free,
    void *data);

/* a fixed caller buffer: line_max and captures become at most size */
void ngx_http_conductor_sse_set_buffer(ngx_http_conductor_sse_t *sse,
    unsigned char *buf, size_t size);

/*
 * Lazy mode, for a stream whose usage is at its start and its end: once the
 * handler was called for a first data line, only the last size bytes are
 * kept (a ring the caller gives), and parsed when the stream finishes; a
 * line longer than size / 2 that ends near the end of a piece is parsed
 * as it comes.  The handler sees, in order, every line of the head and
 * every line that ends in the last size / 2 bytes of the stream, exactly
 * as if every byte had been parsed; lines of the middle are skipped.
 * Costs a copy of at most size bytes and a few short searches for line
 * ends per piece.
 */
void ngx_http_conductor_sse_set_tail(ngx_http_conductor_sse_t *sse,
    unsigned char *buf, size_t size);

/* observes the next len bytes of the body; handler calls happen inside */
void ngx_http_conductor_sse_feed(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len);

/*
 * End of the body: a last line without terminator is handled as if it had
 * one (a cut stream gives unparseable JSON and so no usage).
 */
void ngx_http_conductor_sse_finish(ngx_http_conductor_sse_t *sse);

/* gives the line buffer back; the parser may be initialized again */
void ngx_http_conductor_sse_release(ngx_http_conductor_sse_t *sse);


/* cap may be NULL (size 0): structure is tracked, nothing is captured */
void ngx_http_conductor_sse_scan_init(ngx_http_conductor_sse_scan_t *scan,
    unsigned char *cap, size_t size);

/*
 * p may point into cap itself: a capture copies bytes already read, so its
 * writes stay behind the reads (the parser scans its line buffer in place).
 */
void ngx_http_conductor_sse_scan_feed(ngx_http_conductor_sse_scan_t *scan,
    const unsigned char *p, size_t len);

/*
 * The string value of the document's top-level "type" member when one was
 * seen whole (no escapes, at most TYPE_MAX bytes), else NULL.
 */
const unsigned char *ngx_http_conductor_sse_scan_type(
    const ngx_http_conductor_sse_scan_t *scan, size_t *len);


#endif /* _NGX_HTTP_CONDUCTOR_SSE_H_INCLUDED_ */
