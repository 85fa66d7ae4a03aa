/*
 * Unit tests of the rate limit headers (ngx_http_conductor_ratelimit.h):
 * every header and value form, hostile values (signs, exponents, units it
 * does not know, numbers past uint64, dates past and far ahead), the
 * civil date arithmetic against the C library's timegm() over 1970-2400,
 * and decide()'s rules with clamping, at a fixed clock.  TAP output.
 */

#define _DEFAULT_SOURCE             /* timegm */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ngx_http_conductor_ratelimit.h"


/* 2026-01-01T00:00:00Z, a Thursday */
#define NGX_HTTP_CONDUCTOR_TEST_NOW   1767225600000ULL

/* 9999-12-31T23:59:59Z */
#define NGX_HTTP_CONDUCTOR_TEST_9999  253402300799000ULL

#define NGX_HTTP_CONDUCTOR_TEST_MAX   UINT64_MAX
#define NGX_HTTP_CONDUCTOR_TEST_NONE  (-1)


typedef enum {
    NGX_HTTP_CONDUCTOR_TEST_RETRY = 0,
    NGX_HTTP_CONDUCTOR_TEST_REM_REQ,
    NGX_HTTP_CONDUCTOR_TEST_REM_TOK,
    NGX_HTTP_CONDUCTOR_TEST_RESET_REQ,
    NGX_HTTP_CONDUCTOR_TEST_RESET_TOK
} ngx_http_conductor_test_field_e;


typedef struct {
    const char  *name;
    const char  *value;
    int          field;         /* ngx_http_conductor_test_field_e */
    uint64_t     expect;        /* remaining: (uint64_t) int64 */
} ngx_http_conductor_test_case_t;


#define RA     "Retry-After"
#define RAMS   "retry-after-ms"
#define XRR    "x-ratelimit-remaining-requests"
#define XRT    "x-ratelimit-remaining-tokens"
#define ARR    "anthropic-ratelimit-requests-remaining"
#define ART    "anthropic-ratelimit-tokens-remaining"
#define XSR    "x-ratelimit-reset-requests"
#define XST    "x-ratelimit-reset-tokens"
#define ASR    "anthropic-ratelimit-requests-reset"
#define AST    "anthropic-ratelimit-tokens-reset"

#define F_RA   NGX_HTTP_CONDUCTOR_TEST_RETRY
#define F_RR   NGX_HTTP_CONDUCTOR_TEST_REM_REQ
#define F_RT   NGX_HTTP_CONDUCTOR_TEST_REM_TOK
#define F_SR   NGX_HTTP_CONDUCTOR_TEST_RESET_REQ
#define F_ST   NGX_HTTP_CONDUCTOR_TEST_RESET_TOK

#define NONE   ((uint64_t) (int64_t) NGX_HTTP_CONDUCTOR_TEST_NONE)
#define BIG    NGX_HTTP_CONDUCTOR_TEST_MAX
#define FAR    (NGX_HTTP_CONDUCTOR_TEST_9999 - NGX_HTTP_CONDUCTOR_TEST_NOW)


/* one header on a fresh struct, at NGX_HTTP_CONDUCTOR_TEST_NOW */

static ngx_http_conductor_test_case_t  ngx_http_conductor_test_cases[] = {

    /* Retry-After: delta-seconds */
    { RA, "120", F_RA, 120000 },
    { RA, "0", F_RA, 0 },
    { RA, "  7 ", F_RA, 7000 },
    { RA, "\t7\t", F_RA, 7000 },
    { RA, "007", F_RA, 7000 },
    { RA, "1000000000000", F_RA, 1000000000000000ULL },
    { RA, "18446744073709551", F_RA, 18446744073709551000ULL },
    { RA, "18446744073709552", F_RA, BIG },
    { RA, "18446744073709551615", F_RA, BIG },
    /* beyond 64 bits: garbage, ignored (never a long wait) */
    { RA, "18446744073709551616", F_RA, 0 },
    { RA, "99999999999999999999999999999999", F_RA, 0 },
    { RA, "-5", F_RA, 0 },
    { RA, "+5", F_RA, 0 },
    { RA, "1e9", F_RA, 0 },
    { RA, "7.5", F_RA, 0 },
    { RA, "abc", F_RA, 0 },
    { RA, "", F_RA, 0 },
    { RA, "   ", F_RA, 0 },
    { RA, "7 7", F_RA, 0 },
    { RA, "7s", F_RA, 0 },
    { RA, "0x10", F_RA, 0 },

    /* Retry-After: HTTP-date, the three forms */
    { RA, "Thu, 01 Jan 2026 00:01:30 GMT", F_RA, 90000 },
    { RA, "Thursday, 01-Jan-26 00:01:30 GMT", F_RA, 90000 },
    { RA, "Thu Jan  1 00:01:30 2026", F_RA, 90000 },
    { RA, "Thu Jan 01 00:01:30 2026", F_RA, 90000 },
    { RA, "Thu Jan 15 00:00:00 2026", F_RA, 14ULL * 86400000 },
    { RA, " Thu, 01 Jan 2026 00:01:30 GMT ", F_RA, 90000 },
    { RA, "thu, 01 jan 2026 00:01:30 gmt", F_RA, 90000 },
    { RA, "Mon, 01 Jan 2026 00:01:30 GMT", F_RA, 90000 },  /* name only */
    { RA, "Sun, 29 Feb 2032 12:00:00 GMT", F_RA,
      1961668800000ULL - NGX_HTTP_CONDUCTOR_TEST_NOW },
    { RA, "Fri, 31 Dec 9999 23:59:59 GMT", F_RA, FAR },
    { RA, "Wednesday, 01-Jan-76 00:00:00 GMT", F_RA,
      3345062400000ULL - NGX_HTTP_CONDUCTOR_TEST_NOW },

    /* ... in the past, or not dates */
    { RA, "Sun, 06 Nov 1994 08:49:37 GMT", F_RA, 0 },
    { RA, "Sunday, 06-Nov-94 08:49:37 GMT", F_RA, 0 },
    { RA, "Sun Nov  6 08:49:37 1994", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 00:00:00 GMT", F_RA, 0 },  /* now */
    { RA, "Wed, 31 Dec 2025 23:59:59 GMT", F_RA, 0 },
    { RA, "Friday, 01-Jan-77 00:00:00 GMT", F_RA, 0 },  /* 1977 */
    { RA, "Thu, 01 Jan 1970 00:00:00 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 0000 00:00:00 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 00:01:30 UTC", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 00:01:30", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 00:01:30 GMT x", F_RA, 0 },
    { RA, "Thu, 1 Jan 2026 00:01:30 GMT", F_RA, 0 },
    { RA, "Thu, 32 Jan 2026 00:01:30 GMT", F_RA, 0 },
    { RA, "Thu, 00 Jan 2026 00:01:30 GMT", F_RA, 0 },
    { RA, "Sun, 29 Feb 2026 00:00:00 GMT", F_RA, 0 },
    { RA, "Mon, 29 Feb 2100 00:00:00 GMT", F_RA, 0 },
    { RA, "Thu, 31 Apr 2026 00:00:00 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 24:00:00 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 23:60:00 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 23:59:61 GMT", F_RA, 0 },
    { RA, "Xyz, 01 Jan 2026 00:01:30 GMT", F_RA, 0 },
    { RA, "Thu, 01 Foo 2026 00:01:30 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 2O26 00:01:30 GMT", F_RA, 0 },
    { RA, "Thu, 01 Jan 2026 0:01:30 GMT", F_RA, 0 },
    { RA, "Thu, 01-Jan-26 00:01:30 GMT", F_RA, 0 },  /* short name */
    { RA, "Thursday, 01 Jan 2026 00:01:30 GMT", F_RA, 0 },
    { RA, "Thu Jan 1 00:01:30 2026", F_RA, 0 },
    { RA, "Thu Jan  1 00:01:30 2026 ", F_RA, 90000 },   /* OWS */
    { RA, "Thu Jan  1 00:01:30 20266", F_RA, 0 },
    { RA, "2026-01-01T00:01:30Z", F_RA, 0 },

    /* retry-after-ms */
    { RAMS, "1500", F_RA, 1500 },
    { RAMS, "1500.7", F_RA, 1500 },
    { RAMS, " 20 ", F_RA, 20 },
    { RAMS, "0", F_RA, 0 },
    { RAMS, "99999999999999999999", F_RA, 0 },
    { RAMS, "-1", F_RA, 0 },
    { RAMS, "1e3", F_RA, 0 },
    { RAMS, ".", F_RA, 0 },
    { RAMS, "1.", F_RA, 0 },
    { RAMS, ".5", F_RA, 0 },
    { RAMS, "1.5.5", F_RA, 0 },
    { RAMS, "", F_RA, 0 },
    { "RETRY-AFTER-MS", "30", F_RA, 30 },

    /* remaining counts, the four names in any case */
    { XRR, "42", F_RR, 42 },
    { XRR, "0", F_RR, 0 },
    { XRR, " 9 ", F_RR, 9 },
    { XRR, "9223372036854775807", F_RR, INT64_MAX },
    { XRR, "9223372036854775808", F_RR, NONE },
    { XRR, "18446744073709551616", F_RR, NONE },
    { XRR, "-1", F_RR, NONE },
    { XRR, "1.5", F_RR, NONE },
    { XRR, "1e3", F_RR, NONE },
    { XRR, "", F_RR, NONE },
    { XRR, "abc", F_RR, NONE },
    { "X-RateLimit-Remaining-Requests", "5", F_RR, 5 },
    { XRT, "149984", F_RT, 149984 },
    { XRT, "0", F_RT, 0 },
    { XRT, "-3", F_RT, NONE },
    { ARR, "49", F_RR, 49 },
    { "Anthropic-RateLimit-Requests-Remaining", "0", F_RR, 0 },
    { ART, "39000", F_RT, 39000 },
    { ART, "nope", F_RT, NONE },

    /* OpenAI reset durations */
    { XSR, "6m0s", F_SR, 360000 },
    { XSR, "1s", F_SR, 1000 },
    { XSR, "20ms", F_SR, 20 },
    { XSR, "0.5s", F_SR, 500 },
    { XSR, "1h2m3.5s", F_SR, 3723500 },
    { XSR, "1m30s", F_SR, 90000 },
    { XSR, "2m", F_SR, 120000 },
    { XSR, "1.5h", F_SR, 5400000 },
    { XSR, "0.0001h", F_SR, 360 },
    { XSR, "7", F_SR, 7000 },
    { XSR, "0.25", F_SR, 250 },
    { XSR, "  7 ", F_SR, 7000 },
    { XSR, "0s", F_SR, 0 },
    { XSR, "1.123456789123s", F_SR, 1123 },
    { XSR, "1ms500us", F_SR, 1 },
    { XSR, "1500us", F_SR, 1 },
    { XSR, "1500\xc2\xb5s", F_SR, 1 },
    { XSR, "2500\xce\xbcs", F_SR, 2 },
    { XSR, "3000000ns", F_SR, 3 },
    { XSR, "999999h", F_SR, 3599996400000ULL },
    { XSR, "5124095576030h", F_SR, 18446744073708000000ULL },
    { XSR, "5124095576031h", F_SR, BIG },
    { XSR, "5124095576030h1s", F_SR, 18446744073708001000ULL },
    { XSR, "99999999999999999999h", F_SR, 0 },
    { XSR, "18446744073709551616", F_SR, 0 },
    { XSR, "18446744073709551616ms", F_SR, 0 },
    { XSR, "1h2x", F_SR, 0 },
    { XSR, "1h2", F_SR, 0 },
    { XSR, "", F_SR, 0 },
    { XSR, "abc", F_SR, 0 },
    { XSR, "-5s", F_SR, 0 },
    { XSR, "-5", F_SR, 0 },
    { XSR, "+5s", F_SR, 0 },
    { XSR, "1e9", F_SR, 0 },
    { XSR, "1e9s", F_SR, 0 },
    { XSR, "s", F_SR, 0 },
    { XSR, "1s1h", F_SR, 0 },
    { XSR, "1s1s", F_SR, 0 },
    { XSR, "1us1us", F_SR, 0 },
    { XSR, "1h 2m", F_SR, 0 },
    { XSR, "1.s", F_SR, 0 },
    { XSR, ".5s", F_SR, 0 },
    { XSR, "5d", F_SR, 0 },
    { XSR, "5S", F_SR, 0 },
    { XST, "1s", F_ST, 1000 },
    { XST, "6m0s", F_ST, 360000 },
    { XST, "junk", F_ST, 0 },
    { "X-RateLimit-Reset-Tokens", "12ms", F_ST, 12 },

    /* Anthropic RFC 3339 resets */
    { ASR, "2026-01-01T00:01:00Z", F_SR, 60000 },
    { ASR, "2026-01-01T00:01:00.123Z", F_SR, 60123 },
    { ASR, "2026-01-01T00:01:00.5Z", F_SR, 60500 },
    { ASR, "2026-01-01T00:01:00.123456789Z", F_SR, 60123 },
    { ASR, "2026-01-01T01:01:00+01:00", F_SR, 60000 },
    { ASR, "2025-12-31T18:31:00-05:30", F_SR, 60000 },
    { ASR, "2026-01-01T00:01:00+00:00", F_SR, 60000 },
    { ASR, "2026-01-01T00:01:00-00:00", F_SR, 60000 },
    { ASR, "2026-01-01t00:01:00z", F_SR, 60000 },
    { ASR, " 2026-01-01T00:01:00Z ", F_SR, 60000 },
    { ASR, "2026-01-01T00:00:59:60Z", F_SR, 0 },
    { ASR, "2026-01-01T00:00:60Z", F_SR, 60000 },   /* leap second */
    { ASR, "2028-02-29T00:00:00Z", F_SR,
      1835395200000ULL - NGX_HTTP_CONDUCTOR_TEST_NOW },
    { ASR, "9999-12-31T23:59:59Z", F_SR, FAR },
    { ASR, "9999-12-31T23:59:59-23:59", F_SR,
      FAR + (23 * 3600 + 59 * 60) * 1000ULL },
    { ASR, "2026-01-01T00:00:00Z", F_SR, 0 },       /* now */
    { ASR, "2025-12-31T23:59:59.999Z", F_SR, 0 },
    { ASR, "2026-01-01T00:00:00.001Z", F_SR, 1 },
    { ASR, "2026-01-01T00:30:00+01:00", F_SR, 0 },  /* 23:30 UTC */
    { ASR, "1970-01-01T00:00:00Z", F_SR, 0 },
    { ASR, "0000-01-01T00:00:00Z", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00", F_SR, 0 },        /* no offset */
    { ASR, "2026-01-01 00:01:00Z", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00ZZ", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00Zx", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00.Z", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00+0100", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00+24:00", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00+01:60", F_SR, 0 },
    { ASR, "2026-01-01T00:01:00+01:00x", F_SR, 0 },
    { ASR, "2026-13-01T00:00:00Z", F_SR, 0 },
    { ASR, "2026-00-01T00:00:00Z", F_SR, 0 },
    { ASR, "2026-01-32T00:00:00Z", F_SR, 0 },
    { ASR, "2027-02-29T00:00:00Z", F_SR, 0 },
    { ASR, "2100-02-29T00:00:00Z", F_SR, 0 },
    { ASR, "2026-01-01T24:00:00Z", F_SR, 0 },
    { ASR, "2026-01-01T00:60:00Z", F_SR, 0 },
    { ASR, "2026-1-01T00:00:00Z", F_SR, 0 },
    { ASR, "+2026-01-01T00:00:00Z", F_SR, 0 },
    { ASR, "20261-01-01T00:00:00Z", F_SR, 0 },
    { ASR, "", F_SR, 0 },
    { ASR, "6m0s", F_SR, 0 },
    { ASR, "Thu, 01 Jan 2026 00:01:30 GMT", F_SR, 0 },
    { AST, "2026-01-01T00:00:01Z", F_ST, 1000 },
    { AST, "garbage", F_ST, 0 },
    { "Anthropic-Ratelimit-Tokens-Reset", "2026-01-01T00:00:02Z", F_ST,
      2000 },

    /* names it does not know change nothing */
    { "x-ratelimit-limit-requests", "5", F_RR, NONE },
    { "retry-afte", "5", F_RA, 0 },
    { "retry-after ", "5", F_RA, 0 },
    { "retry_after", "5", F_RA, 0 },
    { "x-ratelimit-remaining-requestsx", "5", F_RR, NONE },
    { "", "5", F_RA, 0 },

    { NULL, NULL, 0, 0 }
};


#include "tap.h"


static void
ngx_http_conductor_test_header(ngx_http_conductor_ratelimit_t *rl,
    const char *name, const char *value, uint64_t now_ms)
{
    ngx_http_conductor_ratelimit_header(rl, (const unsigned char *) name,
                                        strlen(name),
                                        (const unsigned char *) value,
                                        strlen(value), now_ms);
}


static uint64_t
ngx_http_conductor_test_field(ngx_http_conductor_ratelimit_t *rl, int field)
{
    switch (field) {

    case NGX_HTTP_CONDUCTOR_TEST_RETRY:
        return rl->retry_after;

    case NGX_HTTP_CONDUCTOR_TEST_REM_REQ:
        return (uint64_t) rl->remaining_requests;

    case NGX_HTTP_CONDUCTOR_TEST_REM_TOK:
        return (uint64_t) rl->remaining_tokens;

    case NGX_HTTP_CONDUCTOR_TEST_RESET_REQ:
        return rl->reset_requests;

    default:
        return rl->reset_tokens;
    }
}


/* the other fields are as init() left them */

static int
ngx_http_conductor_test_others(ngx_http_conductor_ratelimit_t *rl, int field)
{
    int  f;

    for (f = NGX_HTTP_CONDUCTOR_TEST_RETRY;
         f <= NGX_HTTP_CONDUCTOR_TEST_RESET_TOK;
         f++)
    {
        if (f == field) {
            continue;
        }

        if (ngx_http_conductor_test_field(rl, f)
            != ((f == NGX_HTTP_CONDUCTOR_TEST_REM_REQ
                 || f == NGX_HTTP_CONDUCTOR_TEST_REM_TOK) ? NONE : 0))
        {
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_conductor_test_table(void)
{
    char                             desc[200];
    uint64_t                         got;
    ngx_http_conductor_ratelimit_t   rl;
    ngx_http_conductor_test_case_t  *t;

    for (t = ngx_http_conductor_test_cases; t->name; t++) {
        ngx_http_conductor_ratelimit_init(&rl);
        ngx_http_conductor_test_header(&rl, t->name, t->value,
                                       NGX_HTTP_CONDUCTOR_TEST_NOW);
        got = ngx_http_conductor_test_field(&rl, t->field);

        snprintf(desc, sizeof(desc), "%s: \"%s\" -> %llu", t->name, t->value,
                 (unsigned long long) t->expect);

        ngx_http_conductor_test_ok(got == t->expect
                                   && ngx_http_conductor_test_others(&rl,
                                                                 t->field),
                                   desc);

        if (got != t->expect) {
            printf("# got %llu\n", (unsigned long long) got);
        }
    }
}


/* several headers on one struct */

static void
ngx_http_conductor_test_several(void)
{
    uint64_t                        now;
    ngx_http_conductor_ratelimit_t  rl;

    now = NGX_HTTP_CONDUCTOR_TEST_NOW;

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_ok(rl.retry_after == 0
                               && rl.remaining_requests == -1
                               && rl.remaining_tokens == -1
                               && rl.reset_requests == 0
                               && rl.reset_tokens == 0,
                               "init: nothing known");

    ngx_http_conductor_test_header(&rl, RA, "2", now);
    ngx_http_conductor_test_header(&rl, RAMS, "2500", now);
    ngx_http_conductor_test_ok(rl.retry_after == 2500,
                               "Retry-After 2, retry-after-ms 2500: 2500");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RAMS, "2500", now);
    ngx_http_conductor_test_header(&rl, RA, "2", now);
    ngx_http_conductor_test_ok(rl.retry_after == 2500,
                               "retry-after-ms 2500, Retry-After 2: 2500");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RA, "5", now);
    ngx_http_conductor_test_header(&rl, RA, "3", now);
    ngx_http_conductor_test_header(&rl, RA, "junk", now);
    ngx_http_conductor_test_header(&rl, RA, "Sun, 06 Nov 1994 08:49:37 GMT",
                                   now);
    ngx_http_conductor_test_ok(rl.retry_after == 5000,
                               "Retry-After 5, 3, junk, a past date: 5 s");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RA, "1", now);
    ngx_http_conductor_test_header(&rl, RA, "Thu, 01 Jan 2026 00:01:30 GMT",
                                   now);
    ngx_http_conductor_test_ok(rl.retry_after == 90000,
                               "Retry-After 1 and a date 90 s ahead: 90 s");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, XRR, "5", now);
    ngx_http_conductor_test_header(&rl, XRR, "x", now);
    ngx_http_conductor_test_header(&rl, XRR, "-1", now);
    ngx_http_conductor_test_ok(rl.remaining_requests == 5,
                               "remaining 5 then garbage: still 5");

    ngx_http_conductor_test_header(&rl, ARR, "3", now);
    ngx_http_conductor_test_ok(rl.remaining_requests == 3,
                               "remaining: the last valid value wins");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, XSR, "6m0s", now);
    ngx_http_conductor_test_header(&rl, XSR, "1h2x", now);
    ngx_http_conductor_test_header(&rl, XST, "1s", now);
    ngx_http_conductor_test_header(&rl, AST, "soon", now);
    ngx_http_conductor_test_ok(rl.reset_requests == 360000
                               && rl.reset_tokens == 1000,
                               "resets: garbage after a value keeps it");

    ngx_http_conductor_test_header(&rl, ASR, "2026-01-01T00:00:10Z", now);
    ngx_http_conductor_test_ok(rl.reset_requests == 10000,
                               "resets: the last valid value wins");
}


/*
 * The civil date arithmetic, every day from 1970 to 2400 at a time of day
 * that moves with it, against timegm(); with a clock at 0 every date
 * after the epoch is in the future.
 */

static void
ngx_http_conductor_test_calendar(void)
{
    int                             bad, d;
    char                            buf[64];
    time_t                          t;
    uint64_t                        expect;
    struct tm                       tm;
    ngx_http_conductor_ratelimit_t  rl;

    static const char  *wkdays[] = {
        "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
    };

    static const char  *months[] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
        "Oct", "Nov", "Dec"
    };

    bad = 0;

    for (d = 1; d < 157000 && !bad; d++) {
        t = (time_t) d * 86400 + (d % 86400);
        gmtime_r(&t, &tm);

        expect = (uint64_t) timegm(&tm) * 1000;

        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);

        ngx_http_conductor_ratelimit_init(&rl);
        ngx_http_conductor_test_header(&rl, ASR, buf, 0);

        if (rl.reset_requests != expect) {
            printf("# %s: got %llu, expected %llu\n", buf,
                   (unsigned long long) rl.reset_requests,
                   (unsigned long long) expect);
            bad = 1;
        }

        snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 wkdays[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);

        ngx_http_conductor_ratelimit_init(&rl);
        ngx_http_conductor_test_header(&rl, RA, buf, 0);

        if (rl.retry_after != expect) {
            printf("# %s: got %llu, expected %llu\n", buf,
                   (unsigned long long) rl.retry_after,
                   (unsigned long long) expect);
            bad = 1;
        }
    }

    ngx_http_conductor_test_ok(!bad, "RFC 3339 and IMF-fixdate, every day "
                               "1970-2400, as timegm()");
}


/* leap years by differences: the clock at 28 February, the reset 1 March */

static void
ngx_http_conductor_test_leap(void)
{
    int                             i;
    char                            a[32], b[32], desc[100];
    ngx_http_conductor_ratelimit_t  rl;

    static const struct {
        int  year;
        int  days;
    } years[] = {
        { 1972, 2 }, { 2000, 2 }, { 2027, 1 }, { 2028, 2 }, { 2100, 1 },
        { 2400, 2 }, { 2500, 1 }, { 9996, 2 }
    };

    for (i = 0; i < (int) (sizeof(years) / sizeof(years[0])); i++) {
        snprintf(a, sizeof(a), "%04d-02-28T00:00:00Z", years[i].year);
        snprintf(b, sizeof(b), "%04d-03-01T00:00:00Z", years[i].year);

        ngx_http_conductor_ratelimit_init(&rl);
        ngx_http_conductor_test_header(&rl, ASR, a, 0);
        ngx_http_conductor_test_header(&rl, AST, b, rl.reset_requests);

        snprintf(desc, sizeof(desc), "%d: %d day(s) from 28 Feb to 1 Mar",
                 years[i].year, years[i].days);

        ngx_http_conductor_test_ok(rl.reset_tokens
                                   == (uint64_t) years[i].days * 86400000,
                                   desc);
    }

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, ASR, "2028-02-29T00:00:00Z", 0);
    ngx_http_conductor_test_header(&rl, AST, "2027-02-29T00:00:00Z", 0);
    ngx_http_conductor_test_ok(rl.reset_requests == 1835395200000ULL
                               && rl.reset_tokens == 0,
                               "29 Feb 2028 is a date, 29 Feb 2027 is not");
}


/* RFC 850's two-digit year against the clock's year */

static void
ngx_http_conductor_test_rfc850(void)
{
    ngx_http_conductor_ratelimit_t  rl;

    /* clock in 1994: "94" is 1994, "44" is 2044, "45" is 1945 */
    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RA,
                                   "Sunday, 06-Nov-94 08:49:37 GMT",
                                   784111777000ULL - 37000);
    ngx_http_conductor_test_ok(rl.retry_after == 37000,
                               "RFC 850 '94' with a clock in 1994");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RA,
                                   "Friday, 01-Jan-44 00:00:00 GMT",
                                   784111777000ULL);
    ngx_http_conductor_test_ok(rl.retry_after
                               == 2335219200000ULL - 784111777000ULL,
                               "RFC 850 '44' with a clock in 1994: 2044");

    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RA,
                                   "Monday, 01-Jan-45 00:00:00 GMT",
                                   784111777000ULL);
    ngx_http_conductor_test_ok(rl.retry_after == 0,
                               "RFC 850 '45' with a clock in 1994: 1945");

    /* a clock beyond 9999: no two-digit year maps into 0-9999 ahead */
    ngx_http_conductor_ratelimit_init(&rl);
    ngx_http_conductor_test_header(&rl, RA,
                                   "Monday, 01-Jan-45 00:00:00 GMT",
                                   UINT64_MAX);
    ngx_http_conductor_test_ok(rl.retry_after == 0,
                               "RFC 850 with a clock at UINT64_MAX");
}


static void
ngx_http_conductor_test_decide_one(const char *desc, const char *const *h,
    unsigned status, uint64_t now, uint64_t max, uint64_t cooldown,
    uint64_t exhausted)
{
    uint64_t                        c, e;
    ngx_http_conductor_ratelimit_t  rl;

    ngx_http_conductor_ratelimit_init(&rl);

    for ( /* void */ ; *h; h += 2) {
        ngx_http_conductor_test_header(&rl, h[0], h[1], now);
    }

    c = 12345;
    e = 12345;

    ngx_http_conductor_ratelimit_decide(&rl, status, now, max, &c, &e);

    ngx_http_conductor_test_ok(c == cooldown && e == exhausted, desc);

    if (c != cooldown || e != exhausted) {
        printf("# cooldown %llu, exhausted_until %llu\n",
               (unsigned long long) c, (unsigned long long) e);
    }
}


static void
ngx_http_conductor_test_decide(void)
{
    uint64_t  now, m;

    static const char  *none[] = { NULL };
    static const char  *ra2[] = { RA, "2", NULL };
    static const char  *resets[] = { XSR, "6m0s", XST, "1s", NULL };
    static const char  *req0[] = { XRR, "0", XSR, "20s", XST, "1h", NULL };
    static const char  *tok0[] = { XRR, "5", XRT, "0", XSR, "6m0s",
                                   XST, "1m", NULL };
    static const char  *both0[] = { XRR, "0", XRT, "0", XSR, "6m0s",
                                    XST, "1m", NULL };
    static const char  *req0_noreset[] = { XRR, "0", NULL };
    static const char  *req5[] = { XRR, "5", XSR, "6m0s", NULL };
    static const char  *tok0_429[] = { XRT, "0", XRR, "9", XSR, "2s",
                                       XST, "7s", NULL };
    static const char  *ra30[] = { RA, "30", NULL };
    static const char  *ra_req0[] = { RA, "3", XRR, "0", XSR, "20s", NULL };
    static const char  *anth[] = {
        ARR, "0", ASR, "2026-01-01T00:00:30Z",
        ART, "1000", AST, "2026-01-01T00:05:00Z", NULL
    };
    static const char  *anth_past[] = {
        ARR, "0", ASR, "2025-12-31T23:00:00Z", NULL
    };
    static const char  *ra_huge[] = { RA, "1000000000000", NULL };
    static const char  *ra_wrap[] = { RA, "18446744073709551616", NULL };
    static const char  *ra_ms_huge[] = { RAMS, "99999999999999999999",
                                         NULL };
    static const char  *ra_date_far[] = {
        RA, "Fri, 31 Dec 9999 23:59:59 GMT", NULL
    };
    static const char  *reset_huge[] = { XSR, "999999h", NULL };
    static const char  *reset_far[] = {
        ARR, "0", ASR, "9999-12-31T23:59:59Z", NULL
    };
    static const char  *reset_wrap[] = {
        XRT, "0", XST, "18446744073709551616", NULL
    };
    static const char  *garbage[] = {
        RA, "-5", RA, "1e9", RAMS, "abc", XRR, "-1", XRT, "", XSR, "1h2x",
        XST, "1e9", ASR, "tomorrow", NULL
    };

    now = NGX_HTTP_CONDUCTOR_TEST_NOW;
    m = 300000;

    ngx_http_conductor_test_decide_one("200, no headers: nothing", none,
                                       200, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("429, Retry-After 2: 2 s", ra2,
                                       429, now, m, 2000, 0);
    ngx_http_conductor_test_decide_one("429, no Retry-After: the later "
                                       "reset (6m0s, clamped to 5 min)",
                                       resets, 429, now, m, 300000, 0);
    ngx_http_conductor_test_decide_one("429, no Retry-After: the later "
                                       "reset (6m0s), no clamp",
                                       resets, 429, now, 0, 360000, 0);
    ngx_http_conductor_test_decide_one("429, nothing: 0, the caller backs "
                                       "off", none, 429, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("429, the token limit at 0: still "
                                       "the later of both resets",
                                       tok0_429, 429, now, m, 7000, 0);
    ngx_http_conductor_test_decide_one("200, requests at 0, reset 20s: "
                                       "exhausted for 20 s", req0,
                                       200, now, m, 0, now + 20000);
    ngx_http_conductor_test_decide_one("200, tokens at 0: their reset, not "
                                       "the requests'", tok0,
                                       200, now, m, 0, now + 60000);
    ngx_http_conductor_test_decide_one("200, both at 0: the later reset",
                                       both0, 200, now, 0, 0, now + 360000);
    ngx_http_conductor_test_decide_one("200, both at 0: clamped", both0,
                                       200, now, 100000, 0, now + 100000);
    ngx_http_conductor_test_decide_one("200, at 0 with no reset: not "
                                       "exhausted", req0_noreset,
                                       200, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("200, remaining 5: not exhausted",
                                       req5, 200, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("503, Retry-After 30: 30 s", ra30,
                                       503, now, m, 30000, 0);
    ngx_http_conductor_test_decide_one("503, no Retry-After: 0", resets,
                                       503, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("429 with Retry-After and requests "
                                       "at 0: both", ra_req0,
                                       429, now, m, 3000, now + 20000);
    ngx_http_conductor_test_decide_one("200, Anthropic requests at 0, reset "
                                       "in 30 s", anth,
                                       200, now, m, 0, now + 30000);
    ngx_http_conductor_test_decide_one("429, Anthropic: the later reset "
                                       "(5 min)", anth,
                                       429, now, 0, 300000, 0);
    ngx_http_conductor_test_decide_one("200, a reset in the past: not "
                                       "exhausted", anth_past,
                                       200, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("429, Retry-After 10^12 s: max",
                                       ra_huge, 429, now, m, m, 0);
    ngx_http_conductor_test_decide_one("429, Retry-After 10^12 s, no "
                                       "clamp: 10^15 ms",
                                       ra_huge, 429, now, 0,
                                       1000000000000000ULL, 0);
    ngx_http_conductor_test_decide_one("429, Retry-After 2^64: ignored, "
                                       "not wrapped", ra_wrap, 429, now, m,
                                       0, 0);
    ngx_http_conductor_test_decide_one("429, Retry-After 2^64, no clamp: "
                                       "ignored", ra_wrap, 429, now, 0, 0, 0);
    ngx_http_conductor_test_decide_one("429, retry-after-ms 10^20: ignored",
                                       ra_ms_huge, 429, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("429, Retry-After in 9999: max",
                                       ra_date_far, 429, now, m, m, 0);
    ngx_http_conductor_test_decide_one("429, reset 999999h: max", reset_huge,
                                       429, now, m, m, 0);
    ngx_http_conductor_test_decide_one("200, reset in 9999: now + max",
                                       reset_far, 200, now, m, 0, now + m);
    ngx_http_conductor_test_decide_one("200, reset in 9999, no clamp",
                                       reset_far, 200, now, 0, 0,
                                       NGX_HTTP_CONDUCTOR_TEST_9999);
    ngx_http_conductor_test_decide_one("200, reset 2^64 s: ignored",
                                       reset_wrap, 200, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("200, reset 2^64 s, no clamp: "
                                       "ignored", reset_wrap, 200, now, 0,
                                       0, 0);
    ngx_http_conductor_test_decide_one("200, exhausted near the end of "
                                       "time: saturated", req0,
                                       200, UINT64_MAX - 10, 0, 0,
                                       UINT64_MAX);
    ngx_http_conductor_test_decide_one("429, only garbage: nothing",
                                       garbage, 429, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("200, only garbage: nothing",
                                       garbage, 200, now, m, 0, 0);
    ngx_http_conductor_test_decide_one("max 1: every wait at most 1 ms",
                                       ra_req0, 429, now, 1, 1, now + 1);
}


int
main(void)
{
    ngx_http_conductor_test_table();
    ngx_http_conductor_test_several();
    ngx_http_conductor_test_calendar();
    ngx_http_conductor_test_leap();
    ngx_http_conductor_test_rfc850();
    ngx_http_conductor_test_decide();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
