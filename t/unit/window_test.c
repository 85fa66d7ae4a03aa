/*
 * Unit tests of the two-bucket sliding window (ngx_http_conductor_window.h)
 * on a clock the test sets: the previous bucket counts (a fixed window
 * would fail them), the minute edge, idle periods, wait() exact to the
 * millisecond and against a second-by-second search, sub() into either
 * bucket or none, hour and day periods, and uint64-wide counts against a
 * 128-bit reference.  TAP output.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_http_conductor_window.h"


/* 2026-01-01T00:00:00Z: the start of a minute, an hour and a day */
#define NGX_HTTP_CONDUCTOR_TEST_T0  ((time_t) 1767225600)

#define MIN   ((time_t) 60)
#define HOUR  ((time_t) 3600)
#define DAY   ((time_t) 86400)
#define T0    NGX_HTTP_CONDUCTOR_TEST_T0


#include "tap.h"


static void
ngx_http_conductor_test_is(uint64_t got, uint64_t expect, const char *desc)
{
    ngx_http_conductor_test_ok(got == expect, desc);

    if (got != expect) {
        printf("# got %llu, expected %llu\n", (unsigned long long) got,
               (unsigned long long) expect);
    }
}


/* requests that fit now, one at a time, as the picker reserves them */

static unsigned
ngx_http_conductor_test_fill(ngx_http_conductor_window_t *w, time_t period,
    time_t now, uint64_t limit)
{
    unsigned  n;

    for (n = 0; n < 1000; n++) {
        if (ngx_http_conductor_window_wait(w, period, now, limit, 1) != 0) {
            break;
        }

        ngx_http_conductor_window_add(w, period, now, 1);
    }

    return n;
}


static void
ngx_http_conductor_test_sliding(void)
{
    uint64_t                     prev, cur;
    ngx_http_conductor_window_t  w;

    /* 10/min, 10 requests at 00:59 */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_test_is(ngx_http_conductor_test_fill(&w, MIN,
                                                            T0 + 59, 10),
                               10, "10/min: 10 fit at 00:59");

    /* at 01:05: 10 * 55 / 60 + 0 = 9 */
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 65),
                               9, "01:05: estimate 10 * 55 / 60 = 9");

    ngx_http_conductor_test_is(ngx_http_conductor_window_view(&w, MIN,
                                                              T0 + 65, &prev,
                                                              &cur),
                               5, "01:05: 5 s into its bucket");
    ngx_http_conductor_test_ok(prev == 10 && cur == 0,
                               "01:05: view prev 10, cur 0");
    ngx_http_conductor_test_ok(w.start == T0 && w.cur == 10,
                               "view does not move the buckets");

    /* a fixed window would let 10 more in */
    ngx_http_conductor_test_is(ngx_http_conductor_test_fill(&w, MIN,
                                                            T0 + 65, 10),
                               1, "01:05: only 1 more fits (a fixed "
                               "window: 10)");

    /* 8 + 1 = 9 at 01:07 (10 * 53 / 60 = 8.83) */
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 65, 10, 1),
                               2000, "01:05: the next one in 2000 ms");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 66, 10, 1),
                               1000, "01:06: in 1000 ms");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 67, 10, 1),
                               0, "01:07: now");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 67),
                               9, "01:07: estimate 8 + 1");

    /* as the old minute slides out, room comes back a bit at a time */
    ngx_http_conductor_test_is(ngx_http_conductor_test_fill(&w, MIN,
                                                            T0 + 90, 10),
                               4, "01:30: 10 * 30 / 60 + 1 = 6, 4 fit");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 119),
                               5, "01:59: 10 * 1 / 60 + 5 = 5");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 120),
                               5, "02:00: 5 * 60 / 60 + 0 = 5");
}


static void
ngx_http_conductor_test_edges(void)
{
    uint64_t                     prev, cur;
    ngx_http_conductor_window_t  w;

    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 59, 10);

    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 59),
                               10, "00:59: 10");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 60),
                               10, "01:00: all of prev still counts");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 61),
                               9, "01:01: 10 * 59 / 60 = 9");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 114),
                               1, "01:54: 10 * 6 / 60 = 1");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 115),
                               0, "01:55: 10 * 5 / 60 = 0");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 120),
                               0, "02:00: two periods on, empty");

    /* full at 00:59: not in this bucket; 01:01 is the first second */
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 59, 10, 1),
                               2000, "00:59, full: wait 2000 ms");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 60, 10, 1),
                               1000, "01:00, full: wait 1000 ms");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 59, 10,
                                                              10),
                               56000, "00:59: room for 10 at 01:55");

    /* two idle periods read as empty, and add() starts afresh */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 30, 7);

    ngx_http_conductor_window_view(&w, MIN, T0 + 130, &prev, &cur);
    ngx_http_conductor_test_ok(prev == 0 && cur == 0,
                               "after 2 idle periods: view empty");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 3600),
                               0, "an hour idle: empty");

    ngx_http_conductor_window_add(&w, MIN, T0 + 130, 3);
    ngx_http_conductor_test_ok(w.prev == 0 && w.cur == 3
                               && w.start == T0 + 120,
                               "add after 2 idle periods: prev 0");

    /* one idle period: cur becomes prev */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 30, 7);
    ngx_http_conductor_window_add(&w, MIN, T0 + 75, 2);
    ngx_http_conductor_test_ok(w.prev == 7 && w.cur == 2
                               && w.start == T0 + 60,
                               "add in the next bucket: prev 7, cur 2");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 75),
                               7 * 45 / 60 + 2, "then 7 * 45 / 60 + 2");

    /* a clock set back reads an empty window, and add() starts afresh */
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 - 60),
                               0, "a clock set back: empty");

    /* an unused window (all zero) at a real time */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN, T0),
                               0, "never used: empty");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN, T0,
                                                              10, 10),
                               0, "never used: need == limit fits");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN, T0,
                                                              10, 11),
                               NGX_HTTP_CONDUCTOR_WINDOW_NEVER,
                               "need > limit: never");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN, T0,
                                                              0, 0),
                               0, "need 0, limit 0: now");
}


static void
ngx_http_conductor_test_waits(void)
{
    ngx_http_conductor_window_t  w;

    /* cur alone is over: the next bucket, where cur slides out */
    w.prev = 0;
    w.cur = 10;
    w.start = T0;

    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 30, 10, 1),
                               31000, "cur 10 at :30, need 1: 01:01");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 30, 10,
                                                              10),
                               85000, "cur 10 at :30, need 10: 01:55");

    w.cur = 1000;
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 30, 10, 1),
                               90000, "cur 1000 at :30, limit 10: 02:00, "
                               "two buckets on");

    /* prev only: its share must fall */
    w.prev = 600;
    w.cur = 0;
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 10, 100,
                                                              1),
                               41000, "prev 600 at :10, limit 100: :51 "
                               "(600 * 9 / 60 = 90)");

    /* both: prev's share and cur */
    w.prev = 60;
    w.cur = 30;
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN, T0,
                                                              50, 5),
                               45000, "prev 60, cur 30 at :00, limit 50, "
                               "need 5: :45 (15 + 30 + 5)");

    /* hour and day periods */
    w.prev = 3600;
    w.cur = 0;
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, HOUR, T0,
                                                              1000, 1),
                               2601000, "3600/h at the top of the hour, "
                               "limit 1000: 2601 s");

    w.prev = 86400;
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, DAY, T0,
                                                              86400, 1),
                               1000, "86400/day, at limit: 1 s");
}


/*
 * wait() against the first second, found by stepping value(), at which
 * the estimate + need <= limit.
 */

static void
ngx_http_conductor_test_wait_search(void)
{
    int                          bad;
    time_t                       s, elapsed, period;
    uint64_t                     got, expect, prev, cur, limit, need, i;
    ngx_http_conductor_window_t  w;

    static const time_t    elapsed_v[] = { 0, 1, 17, 30, 58, 59 };
    static const uint64_t  limit_v[] = { 1, 5, 10, 20 };

    bad = 0;
    period = MIN;

    for (prev = 0; prev <= 40; prev += (prev < 20) ? 1 : 5) {
    for (cur = 0; cur <= 40; cur += (cur < 20) ? 1 : 5) {
    for (i = 0; i < sizeof(elapsed_v) / sizeof(elapsed_v[0]); i++) {
    for (limit = 0; limit < 4; limit++) {
    for (need = 1; need <= limit_v[limit]; need++) {

        elapsed = elapsed_v[i];
        w.prev = prev;
        w.cur = cur;
        w.start = T0;

        expect = (uint64_t) -1;

        for (s = T0 + elapsed; s < T0 + 4 * period; s++) {
            if (ngx_http_conductor_window_value(&w, period, s) + need
                <= limit_v[limit])
            {
                expect = (uint64_t) (s - T0 - elapsed) * 1000;
                break;
            }
        }

        got = ngx_http_conductor_window_wait(&w, period, T0 + elapsed,
                                             limit_v[limit], need);

        if (got != expect && !bad) {
            printf("# prev %llu cur %llu elapsed %d limit %llu need %llu: "
                   "got %llu, expected %llu\n", (unsigned long long) prev,
                   (unsigned long long) cur, (int) elapsed,
                   (unsigned long long) limit_v[limit],
                   (unsigned long long) need, (unsigned long long) got,
                   (unsigned long long) expect);
            bad = 1;
        }
    }
    }
    }
    }
    }

    ngx_http_conductor_test_ok(!bad, "wait() is the first second at which "
                               "it fits, for 135k states");
}


static void
ngx_http_conductor_test_sub(void)
{
    ngx_http_conductor_window_t  w;

    /* reserved 5 at :10, 3 given back at :20: the cur bucket */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 10, 5);
    ngx_http_conductor_window_sub(&w, MIN, T0 + 20, T0 + 10, 3);
    ngx_http_conductor_test_ok(w.cur == 2 && w.prev == 0,
                               "sub in the same bucket: from cur");

    /* reserved at :50, given back at 01:10: the bucket is prev now */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 50, 5);
    ngx_http_conductor_window_add(&w, MIN, T0 + 65, 4);
    ngx_http_conductor_window_sub(&w, MIN, T0 + 70, T0 + 50, 3);
    ngx_http_conductor_test_ok(w.prev == 2 && w.cur == 4,
                               "sub a bucket later: from prev, cur kept");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 70),
                               2 * 50 / 60 + 4, "then 2 * 50 / 60 + 4");

    /* the reservation's bucket moved to prev by sub() itself */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 50, 5);
    ngx_http_conductor_window_sub(&w, MIN, T0 + 70, T0 + 50, 1);
    ngx_http_conductor_test_ok(w.prev == 4 && w.cur == 0
                               && w.start == T0 + 60,
                               "sub rotates first: from prev");

    /* two buckets on: gone, nothing to give back */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, MIN, T0 + 10, 5);
    ngx_http_conductor_window_add(&w, MIN, T0 + 70, 6);
    ngx_http_conductor_window_add(&w, MIN, T0 + 130, 7);
    ngx_http_conductor_window_sub(&w, MIN, T0 + 130, T0 + 10, 5);
    ngx_http_conductor_test_ok(w.prev == 6 && w.cur == 7,
                               "sub of a bucket too old: no-op");

    /* a time ahead of the buckets (a clock set back) */
    ngx_http_conductor_window_sub(&w, MIN, T0 + 130, T0 + 200, 5);
    ngx_http_conductor_test_ok(w.prev == 6 && w.cur == 7,
                               "sub of a bucket ahead: no-op");

    /* more than there is: floored at 0 */
    ngx_http_conductor_window_sub(&w, MIN, T0 + 130, T0 + 125, 100);
    ngx_http_conductor_window_sub(&w, MIN, T0 + 130, T0 + 60, 100);
    ngx_http_conductor_test_ok(w.prev == 0 && w.cur == 0,
                               "sub more than there is: 0, not a wrap");

    /* the hour: reserved at 00:59:59, given back at 01:30:00 */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, HOUR, T0 + 3599, 1000);
    ngx_http_conductor_window_sub(&w, HOUR, T0 + 5400, T0 + 3599, 400);
    ngx_http_conductor_test_ok(w.prev == 600 && w.cur == 0,
                               "hour: sub from prev");
}


static void
ngx_http_conductor_test_periods(void)
{
    ngx_http_conductor_window_t  w;

    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, HOUR, T0 + 3599, 100);
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, HOUR,
                                                               T0 + 4500),
                               75, "hour: 100 * 2700 / 3600 = 75");
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, HOUR,
                                                               T0 + 7199),
                               0, "hour: 100 * 1 / 3600 = 0");

    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, DAY, T0 + 86399, 1000);
    ngx_http_conductor_window_add(&w, DAY, T0 + 86400 + 3600, 10);
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, DAY,
                                                               T0 + 86400
                                                               + 21600),
                               760, "day: 1000 * 64800 / 86400 + 10");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, DAY,
                                                              T0 + 86400
                                                              + 21600,
                                                              500, 1),
                               22465000,
                               "day: 1000 * 42335 / 86400 + 10 = 499 at "
                               "44065 s");

    /* periods out of range are clamped, not divided by */
    memset(&w, 0, sizeof(w));
    ngx_http_conductor_window_add(&w, 0, T0, 5);
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, -5, T0),
                               5, "period 0 or negative: 1 s");
    ngx_http_conductor_window_add(&w, (time_t) 1 << 40, T0, 5);
    ngx_http_conductor_test_ok(ngx_http_conductor_window_value(&w,
                                                   (time_t) 1 << 40, T0)
                               == 5, "period 2^40 s: clamped");
}


/* prev * (W - e) / W exactly, for prev up to UINT64_MAX */

static void
ngx_http_conductor_test_wide(void)
{
    int                          bad, i, j, k;
    time_t                       period;
    uint64_t                     prev, got, expect;
    ngx_http_conductor_window_t  w;

    static const time_t    periods[] = { 60, 3600, 86400, 0xffffffff };
    static const uint64_t  prevs[] = {
        1, 59, 61, 86399, 86401, 1ULL << 32, (1ULL << 63) - 1, 1ULL << 63,
        (1ULL << 63) + 12345, UINT64_MAX - 1, UINT64_MAX
    };

    bad = 0;
    srand(1);

    for (i = 0; i < 4; i++) {
        period = periods[i];

        for (j = 0; j < 11 + 200; j++) {
            prev = (j < 11) ? prevs[j]
                            : ((uint64_t) rand() << 42 ^ (uint64_t) rand()
                               << 21 ^ (uint64_t) rand());

            for (k = 0; k < 5; k++) {
                time_t  e = (k == 0) ? 0 : (k == 1) ? 1 : (k == 2)
                            ? period / 2 : (k == 3) ? period - 1
                            : rand() % period;

                w.prev = prev;
                w.cur = 0;
                w.start = T0 - T0 % period;

                got = ngx_http_conductor_window_value(&w, period,
                                                      w.start + e);
#if (defined __SIZEOF_INT128__)
                expect = (uint64_t) ((unsigned __int128) prev
                                     * (uint64_t) (period - e)
                                     / (uint64_t) period);
#else
                expect = got;
#endif
                if (got != expect && !bad) {
                    printf("# prev %llu period %lld elapsed %lld: got %llu, "
                           "expected %llu\n", (unsigned long long) prev,
                           (long long) period, (long long) e,
                           (unsigned long long) got,
                           (unsigned long long) expect);
                    bad = 1;
                }
            }
        }
    }

    ngx_http_conductor_test_ok(!bad, "prev up to 2^64: the share is exact "
                               "(128-bit reference)");

    w.prev = UINT64_MAX;
    w.cur = UINT64_MAX;
    w.start = T0;
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN, T0),
                               UINT64_MAX, "prev + cur past 2^64: saturated");

    w.prev = 1ULL << 63;
    w.cur = 1ULL << 62;
    ngx_http_conductor_test_is(ngx_http_conductor_window_value(&w, MIN,
                                                               T0 + 30),
                               (1ULL << 62) + (1ULL << 62),
                               "2^63 * 30 / 60 + 2^62 = 2^63");

    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 30,
                                                              UINT64_MAX, 1),
                               0, "limit UINT64_MAX: fits");
    ngx_http_conductor_test_is(ngx_http_conductor_window_wait(&w, MIN,
                                                              T0 + 30,
                                                              1ULL << 62, 1),
                               30000 + 1000,
                               "cur 2^62 over a room of 2^62 - 1: the "
                               "next bucket's second 1");

    w.cur = UINT64_MAX - 1;
    ngx_http_conductor_window_add(&w, MIN, T0, 5);
    ngx_http_conductor_test_is(w.cur, UINT64_MAX, "add saturates");
}


int
main(void)
{
    ngx_http_conductor_test_sliding();
    ngx_http_conductor_test_edges();
    ngx_http_conductor_test_waits();
    ngx_http_conductor_test_wait_search();
    ngx_http_conductor_test_sub();
    ngx_http_conductor_test_periods();
    ngx_http_conductor_test_wide();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
