/*
 * The two-bucket sliding window; see the header.
 */


#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ngx_http_conductor_window.h"


static time_t ngx_http_conductor_window_period(time_t period);
static void ngx_http_conductor_window_rotate(ngx_http_conductor_window_t *w,
    time_t period, time_t now);
static uint64_t ngx_http_conductor_window_estimate(uint64_t prev,
    uint64_t cur, time_t period, time_t elapsed);
static time_t ngx_http_conductor_window_first(uint64_t prev, uint64_t cur,
    time_t period, time_t from, uint64_t room);


time_t
ngx_http_conductor_window_view(const ngx_http_conductor_window_t *w,
    time_t period, time_t now, uint64_t *prev, uint64_t *cur)
{
    time_t  start;

    period = ngx_http_conductor_window_period(period);
    now = (now < 0) ? 0 : now;
    start = now - now % period;

    if (w->start == start) {
        *prev = w->prev;
        *cur = w->cur;

    } else if (w->start == start - period) {
        *prev = w->cur;
        *cur = 0;

    } else {
        /* untouched for two periods or more, or a clock set back */
        *prev = 0;
        *cur = 0;
    }

    return now - start;
}


uint64_t
ngx_http_conductor_window_value(const ngx_http_conductor_window_t *w,
    time_t period, time_t now)
{
    time_t    elapsed;
    uint64_t  prev, cur;

    period = ngx_http_conductor_window_period(period);
    elapsed = ngx_http_conductor_window_view(w, period, now, &prev, &cur);

    return ngx_http_conductor_window_estimate(prev, cur, period, elapsed);
}


void
ngx_http_conductor_window_add(ngx_http_conductor_window_t *w, time_t period,
    time_t now, uint64_t n)
{
    period = ngx_http_conductor_window_period(period);
    ngx_http_conductor_window_rotate(w, period, now);

    w->cur = (w->cur > UINT64_MAX - n) ? UINT64_MAX : w->cur + n;
}


void
ngx_http_conductor_window_sub(ngx_http_conductor_window_t *w, time_t period,
    time_t now, time_t when, uint64_t n)
{
    time_t  start;

    period = ngx_http_conductor_window_period(period);
    ngx_http_conductor_window_rotate(w, period, now);

    when = (when < 0) ? 0 : when;
    start = when - when % period;

    if (start == w->start) {
        w->cur -= (n < w->cur) ? n : w->cur;

    } else if (start == w->start - period) {
        w->prev -= (n < w->prev) ? n : w->prev;
    }
}


uint64_t
ngx_http_conductor_window_wait(const ngx_http_conductor_window_t *w,
    time_t period, time_t now, uint64_t limit, uint64_t need)
{
    time_t    elapsed, at;
    uint64_t  prev, cur, room;

    if (need > limit) {
        return NGX_HTTP_CONDUCTOR_WINDOW_NEVER;
    }

    /* the estimate may be at most room */
    room = limit - need;

    period = ngx_http_conductor_window_period(period);
    elapsed = ngx_http_conductor_window_view(w, period, now, &prev, &cur);

    /* in this bucket the estimate falls only as prev's share does */
    if (cur <= room) {
        at = ngx_http_conductor_window_first(prev, cur, period, elapsed,
                                             room);

        if (at < period) {
            return (uint64_t) (at - elapsed) * 1000;
        }
    }

    /* in the next one cur becomes prev */
    at = ngx_http_conductor_window_first(cur, 0, period, 0, room);

    if (at < period) {
        return (uint64_t) (period - elapsed + at) * 1000;
    }

    /* the one after is empty */
    return (uint64_t) (2 * period - elapsed) * 1000;
}


/* a period the arithmetic below is safe with */

static time_t
ngx_http_conductor_window_period(time_t period)
{
    if (period < 1) {
        return 1;
    }

    if (period > NGX_HTTP_CONDUCTOR_WINDOW_PERIOD_MAX) {
        return NGX_HTTP_CONDUCTOR_WINDOW_PERIOD_MAX;
    }

    return period;
}


/* moves the buckets along so that cur is the bucket of now */

static void
ngx_http_conductor_window_rotate(ngx_http_conductor_window_t *w,
    time_t period, time_t now)
{
    time_t  start;

    now = (now < 0) ? 0 : now;
    start = now - now % period;

    if (w->start == start) {
        return;
    }

    w->prev = (w->start == start - period) ? w->cur : 0;
    w->cur = 0;
    w->start = start;
}


/*
 * prev * (period - elapsed) / period + cur, rounded down.  prev is split
 * as q * period + r first: q * (period - elapsed) <= prev, and
 * r * (period - elapsed) < period^2 <= 2^64, so nothing overflows and the
 * result is exact.
 */

static uint64_t
ngx_http_conductor_window_estimate(uint64_t prev, uint64_t cur,
    time_t period, time_t elapsed)
{
    uint64_t  w, k, share;

    w = (uint64_t) period;
    k = w - (uint64_t) elapsed;

    share = prev / w * k + prev % w * k / w;

    return (share > UINT64_MAX - cur) ? UINT64_MAX : share + cur;
}


/*
 * The first second of a bucket, from "from" on, at which its estimate is
 * at most room; period when there is none.  The estimate never rises
 * within a bucket, so a binary search finds it, with the very arithmetic
 * of value().
 */

static time_t
ngx_http_conductor_window_first(uint64_t prev, uint64_t cur, time_t period,
    time_t from, uint64_t room)
{
    time_t  lo, hi, mid;

    lo = from;
    hi = period - 1;

    if (ngx_http_conductor_window_estimate(prev, cur, period, hi) > room) {
        return period;
    }

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (ngx_http_conductor_window_estimate(prev, cur, period, mid)
            <= room)
        {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return lo;
}
