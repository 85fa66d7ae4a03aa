/*
 * What an LLM provider's response headers say about a key's limits.  No
 * nginx include: unit tested and fuzzed on its own.
 *
 * Headers (names in any case, values with optional blanks around them):
 *
 *   Retry-After                      delta-seconds, or an HTTP-date
 *                                    (IMF-fixdate, RFC 850, asctime)
 *   retry-after-ms                   milliseconds ("1500", "1500.5")
 *   x-ratelimit-remaining-requests   OpenAI; a count that fits int64
 *   x-ratelimit-remaining-tokens
 *   anthropic-ratelimit-requests-remaining
 *   anthropic-ratelimit-tokens-remaining
 *   x-ratelimit-reset-requests       OpenAI durations: "6m0s", "20ms",
 *   x-ratelimit-reset-tokens         "0.5s", "1h2m3.5s", or bare seconds
 *   anthropic-ratelimit-requests-reset   RFC 3339: "2026-11-21T20:31:07Z",
 *   anthropic-ratelimit-tokens-reset     ".123" and "+01:00" allowed
 *
 * Every value is read in full or not at all: a value that does not parse
 * (a sign, an exponent, a trailing unit it does not know, an empty value)
 * changes nothing.  Of several Retry-After-ish headers the largest wins;
 * otherwise the last valid value of a field wins.  Numbers too large for
 * a field saturate (a duration at UINT64_MAX ms: "a long time", clamped
 * by decide()), except remaining counts, which must fit int64.  A date in
 * the past is "no wait" (0).  Times are epoch milliseconds.
 */

#ifndef _NGX_HTTP_CONDUCTOR_RATELIMIT_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_RATELIMIT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef struct {
    uint64_t  retry_after;          /* ms, 0: none */
    int64_t   remaining_requests;   /* -1: unknown */
    int64_t   remaining_tokens;     /* -1: unknown */
    uint64_t  reset_requests;       /* ms from now, 0: none */
    uint64_t  reset_tokens;         /* ms from now, 0: none */
} ngx_http_conductor_ratelimit_t;


void ngx_http_conductor_ratelimit_init(ngx_http_conductor_ratelimit_t *rl);

/* one response header; unknown names are ignored */
void ngx_http_conductor_ratelimit_header(ngx_http_conductor_ratelimit_t *rl,
    const unsigned char *name, size_t name_len, const unsigned char *value,
    size_t value_len, uint64_t now_ms);

/*
 * What the answer means for the key, every duration clamped to max_ms
 * (0: no clamp):
 *
 *   cooldown_ms          the answer's Retry-After; for a 429 without one,
 *                        the reset of the limit it hit (both, when the
 *                        status does not say which); 0: the answer does
 *                        not say (the caller backs off on its own)
 *   exhausted_until_ms   now + reset when a remaining count is 0 and its
 *                        reset is known (not for a 429 that waits for that
 *                        reset through cooldown_ms); 0: not exhausted
 */
void ngx_http_conductor_ratelimit_decide(
    const ngx_http_conductor_ratelimit_t *rl, unsigned status,
    uint64_t now_ms, uint64_t max_ms, uint64_t *cooldown_ms,
    uint64_t *exhausted_until_ms);


#endif /* _NGX_HTTP_CONDUCTOR_RATELIMIT_H_INCLUDED_ */
