/*
 * The two-bucket sliding window of the rpm/tpm/rph/tph/rpd/tpd limits.
 * No nginx include: unit tested on its own.
 *
 * Time is cut into buckets of period seconds (aligned on multiples of the
 * period since the epoch).  cur counts what went in during the bucket of
 * start, prev what went in during the one before it.  The estimate at
 * now, elapsed seconds into the current bucket, is
 *
 *     prev * (period - elapsed) / period + cur
 *
 * (rounded down): the previous bucket's count is taken as spread evenly
 * over it, and the part of it still inside the last period is counted.  A
 * window nobody touched for two periods or more reads as empty.
 *
 * Every sum saturates at UINT64_MAX; the product is computed division
 * first, so prev may be any uint64.  period is clamped to
 * [1, NGX_HTTP_CONDUCTOR_WINDOW_PERIOD_MAX].  The caller serialises
 * access (the zone lock).
 */

#ifndef _NGX_HTTP_CONDUCTOR_WINDOW_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_WINDOW_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <time.h>


/* keeps the remainder times the period inside uint64 (136 years) */
#define NGX_HTTP_CONDUCTOR_WINDOW_PERIOD_MAX  ((time_t) 0xffffffff)

/* what wait() says when need > limit: no amount of waiting will do */
#define NGX_HTTP_CONDUCTOR_WINDOW_NEVER       UINT64_MAX


typedef struct {
    uint64_t  prev;
    uint64_t  cur;
    time_t    start;            /* of the cur bucket */
} ngx_http_conductor_window_t;


/*
 * The buckets as they stand at now, without moving them; returns the
 * seconds elapsed in the bucket of now.
 */
time_t ngx_http_conductor_window_view(const ngx_http_conductor_window_t *w,
    time_t period, time_t now, uint64_t *prev, uint64_t *cur);

/* the estimate at now */
uint64_t ngx_http_conductor_window_value(const ngx_http_conductor_window_t *w,
    time_t period, time_t now);

/* n more at now */
void ngx_http_conductor_window_add(ngx_http_conductor_window_t *w,
    time_t period, time_t now, uint64_t n);

/*
 * Gives back n of a reservation made at when, in the bucket it went to:
 * cur or prev as they stand at now, nothing when that bucket is gone.
 */
void ngx_http_conductor_window_sub(ngx_http_conductor_window_t *w,
    time_t period, time_t now, time_t when, uint64_t n);

/*
 * ms from now until estimate + need <= limit, counting whole seconds (the
 * estimate moves once a second); 0 when it holds now,
 * NGX_HTTP_CONDUCTOR_WINDOW_NEVER when need > limit.
 */
uint64_t ngx_http_conductor_window_wait(const ngx_http_conductor_window_t *w,
    time_t period, time_t now, uint64_t limit, uint64_t need);


#endif /* _NGX_HTTP_CONDUCTOR_WINDOW_H_INCLUDED_ */
