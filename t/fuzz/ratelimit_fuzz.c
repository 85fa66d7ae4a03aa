/*
 * libFuzzer target: rate limit headers (ngx_http_conductor_ratelimit.h).
 *
 * Input: a status (2 bytes, big-endian, mod 1000), a clock selector, a
 * clamp selector, then header lines "name:value" cut at LF; a line with no
 * colon is a name with an empty value, and a name of one byte below 0x20
 * stands for a known header (so that the fuzzer reaches every parser from
 * the first run).
 *
 * Checked: remaining counts are -1 or at least 0; the Retry-After wait is
 * the largest of the headers' each fed alone (whatever their order); a
 * header's effect is the same with its name in upper case and its value
 * in extra blanks; decide() for several statuses and clamps keeps
 * cooldown <= max and exhausted_until at 0 or in [now, now + max]
 * (saturating), and a 429 without Retry-After is never "exhausted".
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_ratelimit.h"


#define NGX_HTTP_CONDUCTOR_FUZZ_LINES  64


typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    const unsigned char  *value;
    size_t                value_len;
} ngx_http_conductor_fuzz_header_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  *ngx_http_conductor_fuzz_names[] = {
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset"
};

#define NGX_HTTP_CONDUCTOR_FUZZ_NNAMES                                        \
    (sizeof(ngx_http_conductor_fuzz_names)                                    \
     / sizeof(ngx_http_conductor_fuzz_names[0]))


static const uint64_t  ngx_http_conductor_fuzz_clocks[] = {
    1767225600000ULL,               /* 2026-01-01T00:00:00Z */
    1767225600123ULL,
    0,
    1,
    784111777000ULL,                /* 1994-11-06T08:49:37Z */
    253402300799000ULL,             /* 9999-12-31T23:59:59Z */
    (uint64_t) INT64_MAX,
    UINT64_MAX
};

static const uint64_t  ngx_http_conductor_fuzz_clamps[] = {
    300000, 0, 1, 1000, 60000, 86400000, 1ULL << 62, UINT64_MAX
};

static const unsigned  ngx_http_conductor_fuzz_statuses[] = {
    0, 200, 429, 503
};


static int
ngx_http_conductor_fuzz_same(const ngx_http_conductor_ratelimit_t *a,
    const ngx_http_conductor_ratelimit_t *b)
{
    return a->retry_after == b->retry_after
           && a->remaining_requests == b->remaining_requests
           && a->remaining_tokens == b->remaining_tokens
           && a->reset_requests == b->reset_requests
           && a->reset_tokens == b->reset_tokens;
}


static void
ngx_http_conductor_fuzz_decide(const ngx_http_conductor_ratelimit_t *rl,
    unsigned status, uint64_t now, uint64_t max)
{
    uint64_t  cooldown, until, last;

    ngx_http_conductor_ratelimit_decide(rl, status, now, max, &cooldown,
                                        &until);

    last = (max && now > UINT64_MAX - max) ? UINT64_MAX : now + max;

    if (max && cooldown > max) {
        abort();
    }

    if (until && (until < now || (max && until > last))) {
        abort();
    }

    if (status == 429 && rl->retry_after == 0 && until) {
        abort();
    }

    /* a wait the headers did not ask for is never made up */
    if (rl->retry_after == 0 && rl->reset_requests == 0
        && rl->reset_tokens == 0 && (cooldown || until))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                             i, n, k;
    unsigned                           status;
    uint64_t                           now, max, retry;
    unsigned char                     *buf, *upper;
    const unsigned char               *p, *end, *eol, *colon;
    ngx_http_conductor_ratelimit_t     rl, one, other;
    ngx_http_conductor_fuzz_header_t   h[NGX_HTTP_CONDUCTOR_FUZZ_LINES];

    if (size < 4) {
        return 0;
    }

    status = ((unsigned) data[0] << 8 | data[1]) % 1000;
    now = ngx_http_conductor_fuzz_clocks[data[2] % 8];
    max = ngx_http_conductor_fuzz_clamps[data[3] % 8];

    p = data + 4;
    end = data + size;
    n = 0;

    while (p < end && n < NGX_HTTP_CONDUCTOR_FUZZ_LINES) {
        eol = memchr(p, '\n', end - p);
        eol = eol ? eol : end;
        colon = memchr(p, ':', eol - p);

        h[n].name = p;
        h[n].name_len = (colon ? colon : eol) - p;
        h[n].value = colon ? colon + 1 : eol;
        h[n].value_len = eol - h[n].value;

        if (h[n].name_len == 1 && *p < NGX_HTTP_CONDUCTOR_FUZZ_NNAMES) {
            h[n].name = (const unsigned char *)
                            ngx_http_conductor_fuzz_names[*p];
            h[n].name_len = strlen((const char *) h[n].name);
        }

        n++;
        p = eol + 1;
    }

    ngx_http_conductor_ratelimit_init(&rl);
    retry = 0;

    for (i = 0; i < n; i++) {
        ngx_http_conductor_ratelimit_header(&rl, h[i].name, h[i].name_len,
                                            h[i].value, h[i].value_len, now);

        /* alone, plainly */
        ngx_http_conductor_ratelimit_init(&one);
        ngx_http_conductor_ratelimit_header(&one, h[i].name, h[i].name_len,
                                            h[i].value, h[i].value_len, now);

        retry = (one.retry_after > retry) ? one.retry_after : retry;

        /* alone, the name upper-cased and the value in blanks */
        buf = malloc(h[i].value_len + 3);
        upper = malloc(h[i].name_len + 1);

        if (buf == NULL || upper == NULL) {
            abort();
        }

        buf[0] = ' ';
        buf[1] = '\t';
        memcpy(buf + 2, h[i].value, h[i].value_len);
        buf[h[i].value_len + 2] = ' ';

        for (k = 0; k < h[i].name_len; k++) {
            upper[k] = h[i].name[k];

            if (upper[k] >= 'a' && upper[k] <= 'z') {
                upper[k] -= 'a' - 'A';
            }
        }

        ngx_http_conductor_ratelimit_init(&other);
        ngx_http_conductor_ratelimit_header(&other, upper, h[i].name_len,
                                            buf, h[i].value_len + 3, now);

        free(buf);
        free(upper);

        if (!ngx_http_conductor_fuzz_same(&one, &other)) {
            abort();
        }
    }

    if (rl.retry_after != retry
        || rl.remaining_requests < -1 || rl.remaining_tokens < -1)
    {
        abort();
    }

    for (i = 0; i < 4; i++) {
        ngx_http_conductor_fuzz_decide(&rl,
                                       ngx_http_conductor_fuzz_statuses[i],
                                       now, max);
        ngx_http_conductor_fuzz_decide(&rl,
                                       ngx_http_conductor_fuzz_statuses[i],
                                       now, 0);
    }

    ngx_http_conductor_fuzz_decide(&rl, status, now, max);

    return 0;
}
