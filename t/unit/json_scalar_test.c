
/*
 * The tests of json_test.c run again on the portable string scan: the
 * scanner compiled a second time without SSE2, under other names (the
 * module built on x86_64 has SSE2 and never runs this path).  TAP output.
 */


#define NGX_HTTP_CONDUCTOR_JSON_NO_SIMD  1

#define ngx_http_conductor_json_scan_object                                   \
    ngx_http_conductor_scalar_scan_object
#define ngx_http_conductor_json_key_is     ngx_http_conductor_scalar_key_is
#define ngx_http_conductor_json_find       ngx_http_conductor_scalar_find
#define ngx_http_conductor_json_string_decode                                 \
    ngx_http_conductor_scalar_string_decode
#define ngx_http_conductor_json_escape_len ngx_http_conductor_scalar_escape_len
#define ngx_http_conductor_json_escape     ngx_http_conductor_scalar_escape
#define ngx_http_conductor_json_uint       ngx_http_conductor_scalar_uint
#define ngx_http_conductor_json_member_removal                                \
    ngx_http_conductor_scalar_member_removal
#define ngx_http_conductor_json_splice     ngx_http_conductor_scalar_splice
#define ngx_http_conductor_json_skip_value                                    \
    ngx_http_conductor_scalar_skip_value

#include "ngx_http_conductor_json.c"

#if (NGX_HTTP_CONDUCTOR_JSON_SSE2)
#error the scalar build has SSE2
#endif

#include "json_test.c"
