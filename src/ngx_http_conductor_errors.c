
/*
 * The error answers in the dialects of the endpoints: one table of what
 * each status is called by OpenAI and by Anthropic, shared by the errors
 * the gateway makes itself and by the embedded mock provider's.
 */


#include "ngx_http_conductor.h"


static ngx_http_conductor_error_kind_t  ngx_http_conductor_error_kinds[] = {

    { NGX_HTTP_BAD_REQUEST,
      { "invalid_request_error", "invalid_request_error" }, "bad request" },

    { NGX_HTTP_UNAUTHORIZED,
      { "authentication_error", "authentication_error" },
      "authentication required" },

    { NGX_HTTP_FORBIDDEN,
      { "permission_error", "permission_error" }, "forbidden" },

    { NGX_HTTP_NOT_FOUND,
      { "invalid_request_error", "not_found_error" }, "not found" },

    { NGX_HTTP_NOT_ALLOWED,
      { "invalid_request_error", "invalid_request_error" },
      "method not allowed" },

    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
      { "invalid_request_error", "request_too_large" },
      "the request body is too large" },

    { NGX_HTTP_TOO_MANY_REQUESTS,
      { "rate_limit_exceeded", "rate_limit_error" }, "rate limited" },

    { NGX_HTTP_BAD_GATEWAY,
      { "server_error", "api_error" },
      "no provider answered: every attempt failed" },

    { NGX_HTTP_SERVICE_UNAVAILABLE,
      { "server_error", "overloaded_error" }, "service unavailable" },

    { NGX_HTTP_GATEWAY_TIME_OUT,
      { "server_error", "api_error" }, "the provider timed out" },

    /* any other status: by its class */
    { 0, { "invalid_request_error", "invalid_request_error" },
      "request error" },

    { 0, { "server_error", "api_error" }, "server error" }
};


const ngx_http_conductor_error_kind_t *
ngx_http_conductor_error_kind(ngx_uint_t status)
{
    ngx_http_conductor_error_kind_t  *k;

    for (k = ngx_http_conductor_error_kinds; k->status; k++) {
        if (k->status == status) {
            return k;
        }
    }

    return (status < NGX_HTTP_INTERNAL_SERVER_ERROR) ? k : k + 1;
}


/*
 * A message that names things (a client, a limit, when a budget resets),
 * from the request's pool; a short one of its own if memory is short.
 */

const char *
ngx_http_conductor_error_message(ngx_http_request_t *r, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = ngx_pnalloc(r->pool, NGX_HTTP_CONDUCTOR_MESSAGE_LEN);
    if (p == NULL) {
        return "refused";
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + NGX_HTTP_CONDUCTOR_MESSAGE_LEN - 1, fmt,
                         args);
    va_end(args);

    *last = '\0';

    return (const char *) p;
}
