/*
 * A key's limits as the provider's response headers tell them; see the
 * header.  Every number is parsed by hand with saturating arithmetic: the
 * values come from the network and must never wrap into a short wait.
 */


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ngx_http_conductor_ratelimit.h"


#define NGX_HTTP_CONDUCTOR_RATELIMIT_FRAC_DIGITS  9

/* 0001-01-01 to 1970-01-01, and one Gregorian cycle of 400 years */
#define NGX_HTTP_CONDUCTOR_RATELIMIT_EPOCH_DAYS   719162
#define NGX_HTTP_CONDUCTOR_RATELIMIT_CYCLE_DAYS   146097


typedef enum {
    NGX_HTTP_CONDUCTOR_RATELIMIT_RETRY_AFTER = 0,
    NGX_HTTP_CONDUCTOR_RATELIMIT_RETRY_AFTER_MS,
    NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_REQUESTS,
    NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_TOKENS,
    NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_REQUESTS,     /* a duration */
    NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_TOKENS,
    NGX_HTTP_CONDUCTOR_RATELIMIT_REQUESTS_RESET_AT,  /* an RFC 3339 time */
    NGX_HTTP_CONDUCTOR_RATELIMIT_TOKENS_RESET_AT
} ngx_http_conductor_ratelimit_field_e;


typedef struct {
    const char  *name;          /* lowercase */
    size_t       len;
    int          field;         /* ngx_http_conductor_ratelimit_field_e */
} ngx_http_conductor_ratelimit_name_t;


typedef struct {
    const char  *name;
    size_t       len;
    unsigned     rank;          /* units come largest first */
    uint64_t     mul;           /* ms per unit is mul / div */
    uint64_t     div;
} ngx_http_conductor_ratelimit_unit_t;


#define ngx_http_conductor_ratelimit_name(s, f)  { s, sizeof(s) - 1, f }


static int ngx_http_conductor_ratelimit_is(const unsigned char *p,
    size_t len, const char *name, size_t name_len);
static const unsigned char *ngx_http_conductor_ratelimit_digits(
    const unsigned char *p, const unsigned char *end, uint64_t *v);
static int ngx_http_conductor_ratelimit_uint(const unsigned char *p,
    const unsigned char *end, uint64_t *v);
static int ngx_http_conductor_ratelimit_ms(const unsigned char *p,
    const unsigned char *end, uint64_t *ms);
static int ngx_http_conductor_ratelimit_duration(const unsigned char *p,
    const unsigned char *end, uint64_t *ms);
static int ngx_http_conductor_ratelimit_rfc3339(const unsigned char *p,
    const unsigned char *end, int64_t *ms);
static int ngx_http_conductor_ratelimit_http_date(const unsigned char *p,
    const unsigned char *end, uint64_t now_ms, int64_t *ms);
static int ngx_http_conductor_ratelimit_fixed(const unsigned char *p,
    size_t n, unsigned *v);
static int ngx_http_conductor_ratelimit_clock(const unsigned char *p,
    unsigned *hour, unsigned *min, unsigned *sec);
static int ngx_http_conductor_ratelimit_word(const unsigned char *p,
    size_t len, const char *const *words, int n);
static int ngx_http_conductor_ratelimit_time(int64_t year, unsigned month,
    unsigned day, unsigned hour, unsigned min, unsigned sec, int64_t *t);
static int64_t ngx_http_conductor_ratelimit_days(int64_t year,
    unsigned month, unsigned day);
static int ngx_http_conductor_ratelimit_leap(int64_t year);
static int64_t ngx_http_conductor_ratelimit_year(uint64_t now_ms);
static uint64_t ngx_http_conductor_ratelimit_until(int64_t at_ms,
    uint64_t now_ms);
static uint64_t ngx_http_conductor_ratelimit_add(uint64_t a, uint64_t b);
static uint64_t ngx_http_conductor_ratelimit_mul(uint64_t a, uint64_t b);


static const ngx_http_conductor_ratelimit_name_t
    ngx_http_conductor_ratelimit_names[] =
{
    ngx_http_conductor_ratelimit_name("retry-after",
        NGX_HTTP_CONDUCTOR_RATELIMIT_RETRY_AFTER),
    ngx_http_conductor_ratelimit_name("retry-after-ms",
        NGX_HTTP_CONDUCTOR_RATELIMIT_RETRY_AFTER_MS),
    ngx_http_conductor_ratelimit_name("x-ratelimit-remaining-requests",
        NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_REQUESTS),
    ngx_http_conductor_ratelimit_name("x-ratelimit-remaining-tokens",
        NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_TOKENS),
    ngx_http_conductor_ratelimit_name("anthropic-ratelimit-requests-remaining",
        NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_REQUESTS),
    ngx_http_conductor_ratelimit_name("anthropic-ratelimit-tokens-remaining",
        NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_TOKENS),
    ngx_http_conductor_ratelimit_name("x-ratelimit-reset-requests",
        NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_REQUESTS),
    ngx_http_conductor_ratelimit_name("x-ratelimit-reset-tokens",
        NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_TOKENS),
    ngx_http_conductor_ratelimit_name("anthropic-ratelimit-requests-reset",
        NGX_HTTP_CONDUCTOR_RATELIMIT_REQUESTS_RESET_AT),
    ngx_http_conductor_ratelimit_name("anthropic-ratelimit-tokens-reset",
        NGX_HTTP_CONDUCTOR_RATELIMIT_TOKENS_RESET_AT),
    { NULL, 0, 0 }
};


/* "ms" is tried before "m": the longest unit that matches wins */
static const ngx_http_conductor_ratelimit_unit_t
    ngx_http_conductor_ratelimit_units[] =
{
    { "h", 1, 0, 3600000, 1 },
    { "m", 1, 1, 60000, 1 },
    { "s", 1, 2, 1000, 1 },
    { "ms", 2, 3, 1, 1 },
    { "us", 2, 4, 1, 1000 },
    { "\xc2\xb5s", 3, 4, 1, 1000 },     /* U+00B5 MICRO SIGN */
    { "\xce\xbcs", 3, 4, 1, 1000 },     /* U+03BC GREEK SMALL LETTER MU */
    { "ns", 2, 5, 1, 1000000 },
    { NULL, 0, 0, 0, 0 }
};


static const char *const  ngx_http_conductor_ratelimit_wkdays[] = {
    "mon", "tue", "wed", "thu", "fri", "sat", "sun"
};

static const char *const  ngx_http_conductor_ratelimit_weekdays[] = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday"
};

static const char *const  ngx_http_conductor_ratelimit_months[] = {
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
    "nov", "dec"
};

/* days of the year before each month, in a common year */
static const unsigned  ngx_http_conductor_ratelimit_before[12] = {
    0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334
};

static const unsigned  ngx_http_conductor_ratelimit_mdays[12] = {
    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
};


void
ngx_http_conductor_ratelimit_init(ngx_http_conductor_ratelimit_t *rl)
{
    rl->retry_after = 0;
    rl->remaining_requests = -1;
    rl->remaining_tokens = -1;
    rl->reset_requests = 0;
    rl->reset_tokens = 0;
}


void
ngx_http_conductor_ratelimit_header(ngx_http_conductor_ratelimit_t *rl,
    const unsigned char *name, size_t name_len, const unsigned char *value,
    size_t value_len, uint64_t now_ms)
{
    int64_t                                     at;
    uint64_t                                    v;
    const unsigned char                        *p, *end;
    const ngx_http_conductor_ratelimit_name_t  *h;

    /* every answer has headers, few are ours: retry-after*, x-ratelimit-*,
     * anthropic-ratelimit-*; the first byte turns the rest away */
    if (name_len < 11) {
        return;
    }

    switch (name[0] | 0x20) {
    case 'a': case 'r': case 'x':
        break;
    default:
        return;
    }

    for (h = ngx_http_conductor_ratelimit_names; h->name; h++) {
        if (ngx_http_conductor_ratelimit_is(name, name_len, h->name, h->len))
        {
            break;
        }
    }

    /* an empty value means nothing for any of them */
    if (h->name == NULL || value_len == 0) {
        return;
    }

    /* optional whitespace around a field value */

    p = value;
    end = value + value_len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    switch (h->field) {

    case NGX_HTTP_CONDUCTOR_RATELIMIT_RETRY_AFTER:

        if (ngx_http_conductor_ratelimit_uint(p, end, &v) == 0) {
            v = ngx_http_conductor_ratelimit_mul(v, 1000);

        } else if (ngx_http_conductor_ratelimit_http_date(p, end, now_ms, &at)
                   == 0)
        {
            v = ngx_http_conductor_ratelimit_until(at, now_ms);

        } else {
            return;
        }

        break;

    case NGX_HTTP_CONDUCTOR_RATELIMIT_RETRY_AFTER_MS:

        if (ngx_http_conductor_ratelimit_ms(p, end, &v) != 0) {
            return;
        }

        break;

    case NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_REQUESTS:
    case NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_TOKENS:

        /* -1 means unknown: a count beyond int64 is not a count */
        if (ngx_http_conductor_ratelimit_uint(p, end, &v) != 0
            || v > (uint64_t) INT64_MAX)
        {
            return;
        }

        if (h->field == NGX_HTTP_CONDUCTOR_RATELIMIT_REMAINING_REQUESTS) {
            rl->remaining_requests = (int64_t) v;

        } else {
            rl->remaining_tokens = (int64_t) v;
        }

        return;

    case NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_REQUESTS:
    case NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_TOKENS:

        if (ngx_http_conductor_ratelimit_duration(p, end, &v) != 0) {
            return;
        }

        if (h->field == NGX_HTTP_CONDUCTOR_RATELIMIT_RESET_REQUESTS) {
            rl->reset_requests = v;

        } else {
            rl->reset_tokens = v;
        }

        return;

    default: /* NGX_HTTP_CONDUCTOR_RATELIMIT_*_RESET_AT */

        if (ngx_http_conductor_ratelimit_rfc3339(p, end, &at) != 0) {
            return;
        }

        v = ngx_http_conductor_ratelimit_until(at, now_ms);

        if (h->field == NGX_HTTP_CONDUCTOR_RATELIMIT_REQUESTS_RESET_AT) {
            rl->reset_requests = v;

        } else {
            rl->reset_tokens = v;
        }

        return;
    }

    /* Retry-After and retry-after-ms: the longest wait asked for */

    if (v > rl->retry_after) {
        rl->retry_after = v;
    }
}


void
ngx_http_conductor_ratelimit_decide(const ngx_http_conductor_ratelimit_t *rl,
    unsigned status, uint64_t now_ms, uint64_t max_ms, uint64_t *cooldown_ms,
    uint64_t *exhausted_until_ms)
{
    int       limited, spent;
    uint64_t  reset, retry;

    limited = (status == 429);
    spent = (rl->remaining_requests == 0 || rl->remaining_tokens == 0);

    /* the reset of the limit at 0; a 429 does not say which it hit */

    reset = 0;

    if (rl->remaining_requests == 0 || limited) {
        reset = rl->reset_requests;
    }

    if ((rl->remaining_tokens == 0 || limited) && rl->reset_tokens > reset) {
        reset = rl->reset_tokens;
    }

    retry = rl->retry_after;

    if (max_ms) {
        reset = (reset > max_ms) ? max_ms : reset;
        retry = (retry > max_ms) ? max_ms : retry;
    }

    *cooldown_ms = retry;
    *exhausted_until_ms = 0;

    if (limited && retry == 0) {
        /* a 429 without Retry-After waits for the limit it hit to reset */
        *cooldown_ms = reset;

    } else if (spent && reset) {
        *exhausted_until_ms = ngx_http_conductor_ratelimit_add(now_ms, reset);
    }
}


/* name (lowercase, name_len bytes) in any case */

static int
ngx_http_conductor_ratelimit_is(const unsigned char *p, size_t len,
    const char *name, size_t name_len)
{
    size_t         i;
    unsigned char  c;

    if (len != name_len) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


/*
 * Decimal digits at p: their value in *v; returns the first byte past them
 * (p itself when there is none, or when the number does not fit 64 bits:
 * such a number is garbage, never a long wait).
 */

static const unsigned char *
ngx_http_conductor_ratelimit_digits(const unsigned char *p,
    const unsigned char *end, uint64_t *v)
{
    uint64_t              n, d;
    const unsigned char  *start;

    n = 0;
    start = p;

    while (p < end && *p >= '0' && *p <= '9') {
        d = *p++ - '0';

        if (n > (UINT64_MAX - d) / 10) {
            *v = 0;
            return start;
        }

        n = n * 10 + d;
    }

    *v = n;

    return p;
}


/* the whole of [p, end) is 1*DIGIT */

static int
ngx_http_conductor_ratelimit_uint(const unsigned char *p,
    const unsigned char *end, uint64_t *v)
{
    const unsigned char  *q;

    q = ngx_http_conductor_ratelimit_digits(p, end, v);

    return (q > p && q == end) ? 0 : -1;
}


/* retry-after-ms: 1*DIGIT [ "." 1*DIGIT ], the fraction dropped */

static int
ngx_http_conductor_ratelimit_ms(const unsigned char *p,
    const unsigned char *end, uint64_t *ms)
{
    uint64_t              frac;
    const unsigned char  *q;

    q = ngx_http_conductor_ratelimit_digits(p, end, ms);

    if (q == p) {
        return -1;
    }

    if (q < end && *q == '.') {
        p = q + 1;
        q = ngx_http_conductor_ratelimit_digits(p, end, &frac);

        if (q == p) {
            return -1;
        }
    }

    return (q == end) ? 0 : -1;
}


/*
 * OpenAI's reset durations, as Go prints them: "6m0s", "20ms", "0.5s",
 * "1h2m3.5s", each unit at most once and largest first; or a bare number
 * of seconds ("7", "0.5").  Rounded down to the millisecond.
 */

static int
ngx_http_conductor_ratelimit_duration(const unsigned char *p,
    const unsigned char *end, uint64_t *ms)
{
    size_t                                      best_len;
    uint64_t                                    n, frac, scale, total, part;
    unsigned                                    rank;
    const unsigned char                        *q;
    const ngx_http_conductor_ratelimit_unit_t  *u, *best;

    total = 0;
    rank = 0;

    do {
        q = ngx_http_conductor_ratelimit_digits(p, end, &n);

        if (q == p) {
            return -1;
        }

        frac = 0;
        scale = 1;

        if (q < end && *q == '.') {
            p = ++q;

            /* digits past the ninth are below any unit's nanosecond */
            for ( /* void */ ; q < end && *q >= '0' && *q <= '9'; q++) {
                if (q - p < NGX_HTTP_CONDUCTOR_RATELIMIT_FRAC_DIGITS) {
                    frac = frac * 10 + (*q - '0');
                    scale *= 10;
                }
            }

            if (q == p) {
                return -1;
            }
        }

        p = q;

        if (p == end && rank == 0) {
            /* a bare number: seconds */
            best = &ngx_http_conductor_ratelimit_units[2];

        } else {
            best = NULL;
            best_len = 0;

            for (u = ngx_http_conductor_ratelimit_units; u->name; u++) {
                if (u->len > best_len && (size_t) (end - p) >= u->len
                    && memcmp(p, u->name, u->len) == 0)
                {
                    best = u;
                    best_len = u->len;
                }
            }

            if (best == NULL || best->rank < rank) {
                return -1;
            }

            p += best->len;
        }

        /* frac * mul < 10^9 * 3.6 * 10^6: no overflow */
        part = ngx_http_conductor_ratelimit_mul(n, best->mul) / best->div
               + frac * best->mul / (scale * best->div);

        total = ngx_http_conductor_ratelimit_add(total, part);
        rank = best->rank + 1;

    } while (p < end);

    *ms = total;

    return 0;
}


/*
 * RFC 3339 date-time as epoch ms: "2026-11-21T20:31:07Z", a fraction of a
 * second (".123", digits past the millisecond dropped), an offset
 * ("+01:00", "-05:30") in place of "Z".
 */

static int
ngx_http_conductor_ratelimit_rfc3339(const unsigned char *p,
    const unsigned char *end, int64_t *ms)
{
    size_t    i;
    int64_t   t, off, frac;
    unsigned  year, month, day, hour, min, sec, oh, om;

    if (end - p < 20
        || p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != 't')
        || p[13] != ':' || p[16] != ':'
        || ngx_http_conductor_ratelimit_fixed(p, 4, &year) != 0
        || ngx_http_conductor_ratelimit_fixed(p + 5, 2, &month) != 0
        || ngx_http_conductor_ratelimit_fixed(p + 8, 2, &day) != 0
        || ngx_http_conductor_ratelimit_clock(p + 11, &hour, &min, &sec)
           != 0)
    {
        return -1;
    }

    p += 19;
    frac = 0;

    if (*p == '.') {
        p++;

        for (i = 0; p < end && *p >= '0' && *p <= '9'; i++, p++) {
            if (i < 3) {
                frac = frac * 10 + (*p - '0');
            }
        }

        if (i == 0) {
            return -1;
        }

        for ( /* void */ ; i < 3; i++) {
            frac *= 10;
        }
    }

    if (p == end) {
        /* the offset is not optional */
        return -1;
    }

    if ((*p == 'Z' || *p == 'z') && end - p == 1) {
        off = 0;

    } else if ((*p == '+' || *p == '-') && end - p == 6 && p[3] == ':'
               && ngx_http_conductor_ratelimit_fixed(p + 1, 2, &oh) == 0
               && ngx_http_conductor_ratelimit_fixed(p + 4, 2, &om) == 0
               && oh <= 23 && om <= 59)
    {
        off = (int64_t) oh * 3600 + om * 60;
        off = (*p == '-') ? -off : off;

    } else {
        return -1;
    }

    if (ngx_http_conductor_ratelimit_time(year, month, day, hour, min, sec,
                                          &t)
        != 0)
    {
        return -1;
    }

    /* local time is UTC + offset */
    *ms = (t - off) * 1000 + frac;

    return 0;
}


/*
 * An HTTP-date as epoch ms, in the three forms a recipient must accept
 * (RFC 9110, 5.6.7):
 *
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
 *   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
 *   asctime      "Sun Nov  6 08:49:37 1994"
 *
 * The day name must be one, not necessarily the date's.
 */

static int
ngx_http_conductor_ratelimit_http_date(const unsigned char *p,
    const unsigned char *end, uint64_t now_ms, int64_t *ms)
{
    int                   m;
    int64_t               t, year, cur;
    size_t                n;
    unsigned              y, day, hour, min, sec;
    const unsigned char  *q, *mon, *clock, *gmt;

    for (q = p; q < end && (*q | 0x20) >= 'a' && (*q | 0x20) <= 'z'; q++) {
        /* void */
    }

    n = q - p;

    /* q: the byte after the day name; fixed offsets from there on */

    if (end - q == 26 && q[0] == ',' && q[1] == ' ' && q[4] == ' '
        && q[8] == ' ' && q[13] == ' ' && q[22] == ' ')
    {
        /* IMF-fixdate: ", 06 Nov 1994 08:49:37 GMT" */

        if (ngx_http_conductor_ratelimit_word(p, n,
                                        ngx_http_conductor_ratelimit_wkdays, 7)
            < 0
            || ngx_http_conductor_ratelimit_fixed(q + 2, 2, &day) != 0
            || ngx_http_conductor_ratelimit_fixed(q + 9, 4, &y) != 0)
        {
            return -1;
        }

        year = y;
        mon = q + 5;
        clock = q + 14;
        gmt = q + 23;

    } else if (end - q == 24 && q[0] == ',' && q[1] == ' ' && q[4] == '-'
               && q[8] == '-' && q[11] == ' ' && q[20] == ' ')
    {
        /* RFC 850: ", 06-Nov-94 08:49:37 GMT" */

        if (ngx_http_conductor_ratelimit_word(p, n,
                                     ngx_http_conductor_ratelimit_weekdays, 7)
            < 0
            || ngx_http_conductor_ratelimit_fixed(q + 2, 2, &day) != 0
            || ngx_http_conductor_ratelimit_fixed(q + 9, 2, &y) != 0)
        {
            return -1;
        }

        /* the two-digit year nearest to now: one more than 50 years
         * ahead is the last one in the past (RFC 9110) */
        cur = ngx_http_conductor_ratelimit_year(now_ms);
        year = cur - cur % 100 + y;

        if (year > cur + 50) {
            year -= 100;

        } else if (year <= cur - 50) {
            year += 100;
        }

        mon = q + 5;
        clock = q + 12;
        gmt = q + 21;

    } else if (end - q == 21 && q[0] == ' ' && q[4] == ' ' && q[7] == ' '
               && q[16] == ' ')
    {
        /* asctime: " Nov  6 08:49:37 1994" */

        if (ngx_http_conductor_ratelimit_word(p, n,
                                        ngx_http_conductor_ratelimit_wkdays, 7)
            < 0
            || ngx_http_conductor_ratelimit_fixed(q + 17, 4, &y) != 0
            || (q[5] == ' '
                ? ngx_http_conductor_ratelimit_fixed(q + 6, 1, &day)
                : ngx_http_conductor_ratelimit_fixed(q + 5, 2, &day))
               != 0)
        {
            return -1;
        }

        year = y;
        mon = q + 1;
        clock = q + 8;
        gmt = NULL;

    } else {
        return -1;
    }

    m = ngx_http_conductor_ratelimit_word(mon, 3,
                                     ngx_http_conductor_ratelimit_months, 12);

    if (m < 0
        || (gmt && !ngx_http_conductor_ratelimit_is(gmt, 3, "gmt", 3))
        || ngx_http_conductor_ratelimit_clock(clock, &hour, &min, &sec) != 0
        || year > 9999
        || ngx_http_conductor_ratelimit_time(year, m + 1, day, hour, min, sec,
                                             &t)
           != 0)
    {
        return -1;
    }

    *ms = t * 1000;

    return 0;
}


/* exactly n digits at p */

static int
ngx_http_conductor_ratelimit_fixed(const unsigned char *p, size_t n,
    unsigned *v)
{
    size_t  i;

    *v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        *v = *v * 10 + (p[i] - '0');
    }

    return 0;
}


/* "HH:MM:SS" at p */

static int
ngx_http_conductor_ratelimit_clock(const unsigned char *p, unsigned *hour,
    unsigned *min, unsigned *sec)
{
    if (p[2] != ':' || p[5] != ':'
        || ngx_http_conductor_ratelimit_fixed(p, 2, hour) != 0
        || ngx_http_conductor_ratelimit_fixed(p + 3, 2, min) != 0
        || ngx_http_conductor_ratelimit_fixed(p + 6, 2, sec) != 0)
    {
        return -1;
    }

    return 0;
}


/* the index of the word [p, p + len) in words, any case; -1: none */

static int
ngx_http_conductor_ratelimit_word(const unsigned char *p, size_t len,
    const char *const *words, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        if (ngx_http_conductor_ratelimit_is(p, len, words[i],
                                            strlen(words[i])))
        {
            return i;
        }
    }

    return -1;
}


/* a UTC civil time as epoch seconds; -1 when it is not a valid time */

static int
ngx_http_conductor_ratelimit_time(int64_t year, unsigned month, unsigned day,
    unsigned hour, unsigned min, unsigned sec, int64_t *t)
{
    unsigned  mdays;

    if (year < 0 || month < 1 || month > 12 || day < 1) {
        return -1;
    }

    mdays = ngx_http_conductor_ratelimit_mdays[month - 1]
            + (month == 2 && ngx_http_conductor_ratelimit_leap(year));

    /* a leap second (:60) counts as the next minute's first */
    if (day > mdays || hour > 23 || min > 59 || sec > 60) {
        return -1;
    }

    *t = ngx_http_conductor_ratelimit_days(year, month, day) * 86400
         + (int64_t) hour * 3600 + min * 60 + sec;

    return 0;
}


/*
 * Days from 1970-01-01 to a Gregorian date (year >= 0).  The year is
 * moved on by one 400-year cycle, which has a whole number of days, so
 * that the leap years before it are counted with positive divisions.
 */

static int64_t
ngx_http_conductor_ratelimit_days(int64_t year, unsigned month, unsigned day)
{
    int64_t  y, n;

    y = year + 400 - 1;         /* whole years before it */

    n = y * 365 + y / 4 - y / 100 + y / 400
        + ngx_http_conductor_ratelimit_before[month - 1]
        + (month > 2 && ngx_http_conductor_ratelimit_leap(year))
        + day - 1;

    return n - NGX_HTTP_CONDUCTOR_RATELIMIT_CYCLE_DAYS
           - NGX_HTTP_CONDUCTOR_RATELIMIT_EPOCH_DAYS;
}


static int
ngx_http_conductor_ratelimit_leap(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}


/* the year of an epoch time, for RFC 850's two-digit years */

static int64_t
ngx_http_conductor_ratelimit_year(uint64_t now_ms)
{
    int64_t  days, year;

    days = (int64_t) (now_ms / 86400000);

    /* close to it from the average year length, then exact */
    year = 1970 + days * 400 / NGX_HTTP_CONDUCTOR_RATELIMIT_CYCLE_DAYS;

    while (ngx_http_conductor_ratelimit_days(year, 1, 1) > days) {
        year--;
    }

    while (ngx_http_conductor_ratelimit_days(year + 1, 1, 1) <= days) {
        year++;
    }

    return year;
}


/* ms from now to at; 0 when at is not in the future */

static uint64_t
ngx_http_conductor_ratelimit_until(int64_t at_ms, uint64_t now_ms)
{
    if (at_ms <= 0 || (uint64_t) at_ms <= now_ms) {
        return 0;
    }

    return (uint64_t) at_ms - now_ms;
}


static uint64_t
ngx_http_conductor_ratelimit_add(uint64_t a, uint64_t b)
{
    return (a > UINT64_MAX - b) ? UINT64_MAX : a + b;
}


static uint64_t
ngx_http_conductor_ratelimit_mul(uint64_t a, uint64_t b)
{
    return (b && a > UINT64_MAX / b) ? UINT64_MAX : a * b;
}
