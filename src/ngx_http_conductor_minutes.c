/*
 * Per-minute buckets of a history series, see
 * ngx_http_conductor_minutes.h.  No nginx include.
 */

#include <string.h>

#include "ngx_http_conductor_minutes.h"


void
ngx_http_conductor_minutes_turn(ngx_http_conductor_minute_t *b, size_t n,
    uint64_t *newest, uint64_t minute)
{
    uint64_t  m;

    if (minute > *newest && minute - *newest < n) {
        /* the minutes without a request since are empty */
        for (m = *newest + 1; m <= minute; m++) {
            memset(&b[m % n], 0, sizeof(ngx_http_conductor_minute_t));
        }

        *newest = minute;

    } else if (minute > *newest || *newest - minute >= n) {
        /* idle for the whole window, or a clock set back beyond it */
        memset(b, 0, n * sizeof(ngx_http_conductor_minute_t));
        *newest = minute;
    }

    /* else a minute the window still holds */
}


void
ngx_http_conductor_minutes_read(const ngx_http_conductor_minute_t *b,
    size_t n, uint64_t newest, uint64_t end, size_t want,
    ngx_http_conductor_minute_t *out)
{
    size_t    i;
    uint64_t  m;

    for (i = 0; i < want; i++) {
        /* (wraps for minutes before the first: above newest, empty) */
        m = end - (want - 1) + i;

        if (newest && m <= newest && newest - m < n) {
            out[i] = b[m % n];

        } else {
            memset(&out[i], 0, sizeof(ngx_http_conductor_minute_t));
        }
    }
}


void
ngx_http_conductor_minutes_move(ngx_http_conductor_minute_t *dst,
    size_t dn, uint64_t *dnewest, const ngx_http_conductor_minute_t *src,
    size_t sn, uint64_t snewest)
{
    size_t    keep;
    uint64_t  m;

    memset(dst, 0, dn * sizeof(ngx_http_conductor_minute_t));
    *dnewest = snewest;

    if (snewest == 0) {
        return;
    }

    keep = dn < sn ? dn : sn;

    for (m = (snewest >= keep) ? snewest - keep + 1 : 1; m <= snewest; m++) {
        dst[m % dn] = src[m % sn];
    }
}
