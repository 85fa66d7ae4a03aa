/*
 * Unit tests of the per-minute buckets of the history
 * (ngx_http_conductor_minutes.h) on minutes the test chooses: a minute
 * turning over, gaps of every length around the window's, a bucket reused
 * after a wrap, an idle window, a clock set back inside and beyond the
 * window, reads ending before, at and after the newest minute, a series
 * moved to a bigger and a smaller window, saturation; then random walks
 * against a reference that keeps every minute apart.  TAP output.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_minutes.h"


/* 2026-01-01T00:00:00Z in minutes */
#define M0  ((uint64_t) 29453760)

#define NMAX   64
#define SPAN   4096      /* minutes the reference keeps apart */


#include "tap.h"


/* the requests of the want minutes ending at end, as "a,b,c" */

static const char *
ngx_http_conductor_test_reqs(const ngx_http_conductor_minute_t *b, size_t n,
    uint64_t newest, uint64_t end, size_t want)
{
    size_t                        i;
    char                         *p;
    static char                   buf[1024];
    ngx_http_conductor_minute_t   out[NMAX];

    ngx_http_conductor_minutes_read(b, n, newest, end, want, out);

    p = buf;
    *p = '\0';

    for (i = 0; i < want; i++) {
        p += sprintf(p, "%s%u", i ? "," : "", out[i].requests);
    }

    return buf;
}


static void
ngx_http_conductor_test_is_reqs(const ngx_http_conductor_minute_t *b,
    size_t n, uint64_t newest, uint64_t end, size_t want, const char *expect,
    const char *desc)
{
    const char  *got;

    got = ngx_http_conductor_test_reqs(b, n, newest, end, want);

    ngx_http_conductor_test_ok(strcmp(got, expect) == 0, desc);

    if (strcmp(got, expect) != 0) {
        printf("# got %s, expected %s\n", got, expect);
    }
}


static void
ngx_http_conductor_test_cases(void)
{
    uint64_t                     newest, newest2;
    ngx_http_conductor_minute_t  b[3], c[5], d[2], out[3];

    memset(b, 0, sizeof(b));
    newest = 0;

    ngx_http_conductor_test_is_reqs(b, 3, newest, M0, 3, "0,0,0",
                                    "fresh: empty");

    ngx_http_conductor_minutes_add(b, 3, &newest, M0, 0, 10, 100);
    ngx_http_conductor_minutes_add(b, 3, &newest, M0, 1, 5, 50);
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0, 3, "0,0,2",
                                    "two in the minute: the last bucket");

    ngx_http_conductor_minutes_read(b, 3, newest, M0, 3, out);
    ngx_http_conductor_test_ok(out[2].errors == 1 && out[2].tokens == 15
                               && out[2].cost == 150,
                               "their errors, tokens and cost add up");

    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 1, 3, "0,2,0",
                                    "read a minute later: it moved left");
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 3, 3, "0,0,0",
                                    "read three minutes later: gone");
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 - 1, 3, "0,0,0",
                                    "read a minute before: not yet");
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0, 1, "2",
                                    "want 1: the newest only");

    /* the minute turns over */
    ngx_http_conductor_minutes_add(b, 3, &newest, M0 + 1, 0, 1, 1);
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 1, 3, "0,2,1",
                                    "the next minute: its own bucket");

    /* a gap of one minute, inside the window */
    ngx_http_conductor_minutes_add(b, 3, &newest, M0 + 3, 0, 1, 1);
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 3, 3, "1,0,1",
                                    "a gap: the skipped minute is empty, "
                                    "M0's bucket reused for M0 + 3");

    /* a gap of exactly the window */
    ngx_http_conductor_minutes_add(b, 3, &newest, M0 + 6, 0, 1, 1);
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 6, 3, "0,0,1",
                                    "a gap of the whole window: all "
                                    "cleared");

    /* the clock set back inside the window */
    ngx_http_conductor_minutes_add(b, 3, &newest, M0 + 5, 0, 1, 1);
    ngx_http_conductor_test_ok(newest == M0 + 6, "set back: newest stays");
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 6, 3, "0,1,1",
                                    "set back a minute: counted in it");

    /* ... and beyond it */
    ngx_http_conductor_minutes_add(b, 3, &newest, M0 + 2, 0, 1, 1);
    ngx_http_conductor_test_ok(newest == M0 + 2,
                               "set back beyond the window: it starts "
                               "again there");
    ngx_http_conductor_test_is_reqs(b, 3, newest, M0 + 2, 3, "0,0,1",
                                    "... with that request only");

    /* moves: to a bigger window, then a smaller one */
    memset(c, 0, sizeof(c));
    newest = 0;

    ngx_http_conductor_minutes_add(c, 5, &newest, M0, 0, 1, 1);
    ngx_http_conductor_minutes_add(c, 5, &newest, M0 + 2, 0, 1, 1);
    ngx_http_conductor_minutes_add(c, 5, &newest, M0 + 2, 0, 1, 1);
    ngx_http_conductor_minutes_add(c, 5, &newest, M0 + 3, 0, 1, 1);
    ngx_http_conductor_minutes_add(c, 5, &newest, M0 + 4, 0, 1, 1);

    ngx_http_conductor_minutes_move(d, 2, &newest2, c, 5, newest);
    ngx_http_conductor_test_is_reqs(d, 2, newest2, M0 + 4, 2, "1,1",
                                    "moved to 2 minutes: the newest two");
    ngx_http_conductor_minutes_add(d, 2, &newest2, M0 + 5, 0, 1, 1);
    ngx_http_conductor_test_is_reqs(d, 2, newest2, M0 + 5, 2, "1,1",
                                    "... and it goes on from there");

    ngx_http_conductor_minutes_move(b, 3, &newest2, c, 5, newest);
    ngx_http_conductor_minutes_move(c, 5, &newest, b, 3, newest2);
    ngx_http_conductor_test_is_reqs(c, 5, newest, M0 + 4, 5, "0,0,2,1,1",
                                    "5 to 3 to 5 minutes: the 3 newest");

    memset(d, 0xff, sizeof(d));
    ngx_http_conductor_minutes_move(d, 2, &newest2, c, 5, 0);
    ngx_http_conductor_test_ok(newest2 == 0 && d[0].requests == 0
                               && d[1].tokens == 0,
                               "moving an empty series clears the new one");

    /* saturation */
    memset(d, 0, sizeof(d));
    newest = 0;
    ngx_http_conductor_minutes_add(d, 2, &newest, M0, 1, UINT64_MAX - 1,
                                   UINT64_MAX);
    ngx_http_conductor_minutes_add(d, 2, &newest, M0, 1, 5, 5);
    ngx_http_conductor_test_ok(d[M0 % 2].requests == 2
                               && d[M0 % 2].errors == 2
                               && d[M0 % 2].tokens == UINT64_MAX
                               && d[M0 % 2].cost == UINT64_MAX,
                               "tokens and cost saturate");

    /* a window of one minute */
    memset(d, 0, sizeof(d));
    newest = 0;
    ngx_http_conductor_minutes_add(d, 1, &newest, M0, 0, 1, 1);
    ngx_http_conductor_minutes_add(d, 1, &newest, M0 + 1, 0, 1, 1);
    ngx_http_conductor_test_is_reqs(d, 1, newest, M0 + 1, 1, "1",
                                    "one bucket: the next minute clears it");
}


/*
 * Random walks: a clock that mostly goes on (by gaps of 0 to 3 windows),
 * sometimes goes back (a little, or far); after every request every read
 * of a window ending near the newest minute is what a reference that
 * keeps each minute apart says.
 */

static void
ngx_http_conductor_test_random(void)
{
    int                          bad, i, k, round;
    size_t                       n, want, j;
    uint64_t                     newest, rnewest, clock, end, m;
    static uint32_t              ref[SPAN];
    ngx_http_conductor_minute_t  b[NMAX], out[NMAX];
    char                         desc[128];

    srand(1);

    for (round = 0; round < 200; round++) {
        n = 1 + rand() % NMAX;
        memset(b, 0, sizeof(b));
        memset(ref, 0, sizeof(ref));
        newest = 0;
        rnewest = 0;
        clock = M0 + SPAN / 2;
        bad = 0;

        for (i = 0; i < 400 && !bad; i++) {
            k = rand() % 100;

            if (k < 60) {
                /* the same minute */

            } else if (k < 90) {
                clock += rand() % (3 * n + 1);

            } else if (k < 97) {
                clock -= rand() % (n + 1);

            } else {
                clock -= rand() % (3 * n + 1);
            }

            if (clock < M0 + 1 || clock >= M0 + SPAN) {
                clock = M0 + SPAN / 2;
            }

            /* the reference: a clock set back beyond the window resets */
            if (rnewest && clock < rnewest && rnewest - clock >= n) {
                memset(ref, 0, sizeof(ref));
                rnewest = clock;

            } else if (clock > rnewest) {
                rnewest = clock;
            }

            ref[clock - M0]++;

            ngx_http_conductor_minutes_add(b, n, &newest, clock, 0, 1, 1);

            if (newest != rnewest) {
                bad = 1;
                break;
            }

            for (end = rnewest - 1; end <= rnewest + n + 1 && !bad; end++) {
                want = 1 + rand() % n;

                ngx_http_conductor_minutes_read(b, n, newest, end, want, out);

                for (j = 0; j < want; j++) {
                    m = end - (want - 1) + j;

                    if (out[j].requests
                        != ((m <= rnewest && rnewest - m < n)
                            ? ref[m - M0] : 0))
                    {
                        bad = 1;
                    }
                }
            }
        }

        if (bad || round % 40 == 0) {
            snprintf(desc, sizeof(desc), "random walk %d, %zu minutes: "
                     "every read as the reference", round, n);
            ngx_http_conductor_test_ok(!bad, desc);
        }
    }
}


int
main(void)
{
    ngx_http_conductor_test_cases();
    ngx_http_conductor_test_random();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
