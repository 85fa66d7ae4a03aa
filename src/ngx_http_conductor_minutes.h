/*
 * Per-minute buckets of a history series (conductor_history): a ring of n
 * buckets, minute m in bucket m % n, and the newest minute written.  No
 * nginx include: unit tested on its own.
 *
 * Buckets are started again lazily: the write of a later minute clears
 * the buckets of the minutes skipped since the newest (all of them after
 * an idle window), so nothing needs a timer.  A bucket is minute m's while
 * newest - m < n; a reader takes none outside that.  A clock set back
 * inside the window writes into the minute it says; beyond it, the series
 * starts again from there.  Tokens and cost saturate (a request's are up
 * to 10^12 tokens, its cost up to the record's UINT64_MAX pico-USD).  The
 * caller serialises access (the zone lock).
 */

#ifndef _NGX_HTTP_CONDUCTOR_MINUTES_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_MINUTES_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef struct {
    uint32_t  requests;
    uint32_t  errors;
    uint64_t  tokens;
    uint64_t  cost;                 /* pico-USD */
} ngx_http_conductor_minute_t;


/* a write in another minute than the newest: the buckets it clears */
void ngx_http_conductor_minutes_turn(ngx_http_conductor_minute_t *b,
    size_t n, uint64_t *newest, uint64_t minute);


/*
 * One request ended in minute (epoch / 60; 0 is never written).  Inline:
 * it runs for every series of every request, and nearly always in the
 * newest minute.
 */
static inline void
ngx_http_conductor_minutes_add(ngx_http_conductor_minute_t *b, size_t n,
    uint64_t *newest, uint64_t minute, int error, uint64_t tokens,
    uint64_t cost)
{
    ngx_http_conductor_minute_t  *x;

    if (minute != *newest) {
        ngx_http_conductor_minutes_turn(b, n, newest, minute);
    }

    x = &b[minute % n];

    /* 32 bits: 71 million requests a second would be needed to wrap */
    x->requests++;
    x->errors += (error != 0);
    x->tokens = (x->tokens + tokens >= x->tokens) ? x->tokens + tokens
                                                  : UINT64_MAX;
    x->cost = (x->cost + cost >= x->cost) ? x->cost + cost : UINT64_MAX;
}

/* the want minutes that end with minute end, oldest first, into out */
void ngx_http_conductor_minutes_read(const ngx_http_conductor_minute_t *b,
    size_t n, uint64_t newest, uint64_t end, size_t want,
    ngx_http_conductor_minute_t *out);

/*
 * A series into one of another size (dst cleared, *dnewest 0): the
 * minutes both hold.
 */
void ngx_http_conductor_minutes_move(ngx_http_conductor_minute_t *dst,
    size_t dn, uint64_t *dnewest, const ngx_http_conductor_minute_t *src,
    size_t sn, uint64_t snewest);


#endif /* _NGX_HTTP_CONDUCTOR_MINUTES_H_INCLUDED_ */
