/*
 * Token usage out of LLM API responses: a whole JSON body, one SSE data
 * payload at a time, or a usage object captured by the SSE parser's
 * over-long line fallback.  No nginx include (jansson only): unit tested
 * and fuzzed on its own.
 *
 * Meaning of the counters, the same for every API so that cost is
 * computed one way:
 *
 *   prompt          every input token, cached and cache-written included:
 *                   OpenAI prompt_tokens / input_tokens; Anthropic
 *                   input_tokens + cache_read_input_tokens
 *                   + cache_creation_input_tokens (Anthropic's own
 *                   input_tokens excludes cache tokens)
 *   completion      output tokens, reasoning included
 *   cached          part of prompt read from cache (OpenAI cached_tokens,
 *                   Anthropic cache_read_input_tokens)
 *   cache_creation  part of prompt written to cache (Anthropic only)
 *   reasoning       part of completion (OpenAI reasoning_tokens)
 *   total           the provider's total_tokens when it sent one, else
 *                   prompt + completion
 *
 * so uncached input = prompt - cached - cache_creation for every API.
 * A has_* flag says the field was sent by the provider (total and, for
 * Anthropic, prompt are always filled once found is set).  Values outside
 * 0..NGX_HTTP_CONDUCTOR_USAGE_MAX, non-integers and nulls are ignored.
 *
 * Stream rules: OpenAI kinds take the last usage object seen as a whole
 * (running totals are never summed; "usage": null is skipped); Responses
 * only takes response.usage of response.completed / .incomplete /
 * .failed; Anthropic takes each field's latest value from message_start's
 * message.usage and message_delta's usage.
 */

#ifndef _NGX_HTTP_CONDUCTOR_USAGE_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_USAGE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_http_conductor_sse.h"


/* far above any real request; keeps tokens * price inside int64 */
#define NGX_HTTP_CONDUCTOR_USAGE_MAX  1000000000000LL


/* the endpoints the gateway routes: the one list the module and the usage
 * parsers share (and the index into the endpoint paths) */
typedef enum {
    NGX_HTTP_CONDUCTOR_EP_CHAT = 0,         /* /v1/chat/completions */
    NGX_HTTP_CONDUCTOR_EP_COMPLETIONS,      /* /v1/completions (legacy) */
    NGX_HTTP_CONDUCTOR_EP_EMBEDDINGS,       /* /v1/embeddings */
    NGX_HTTP_CONDUCTOR_EP_RESPONSES,        /* /v1/responses */
    NGX_HTTP_CONDUCTOR_EP_MESSAGES,         /* /v1/messages (Anthropic) */
    NGX_HTTP_CONDUCTOR_NEPS
} ngx_http_conductor_endpoint_e;


typedef struct {
    int64_t   prompt;
    int64_t   completion;
    int64_t   cached;
    int64_t   cache_creation;
    int64_t   reasoning;
    int64_t   total;

    int64_t   input;            /* private: Anthropic input_tokens as sent */
    int       api;              /* ngx_http_conductor_endpoint_e */

    unsigned  has_prompt:1;
    unsigned  has_completion:1;
    unsigned  has_cached:1;
    unsigned  has_cache_creation:1;
    unsigned  has_reasoning:1;
    unsigned  has_total:1;
    unsigned  has_input:1;
    unsigned  found:1;          /* some usage object was taken */
    unsigned  terminal:1;       /* the stream's last event was seen */
    unsigned  delta:1;          /* a top-level usage of a stream event:
                                   Anthropic's final message_delta */
} ngx_http_conductor_usage_t;


void ngx_http_conductor_usage_init(ngx_http_conductor_usage_t *u, int api);

/*
 * A complete non-stream response body of u->api: its top-level "usage"
 * (for chat and completions, failing that, "choices[0].usage").  Returns
 * 1 when usage was taken, 0 otherwise (error body, no usage, not JSON).
 * The body is run through the structure scanner and jansson parses only
 * the usage object; a whole-body parse happens only for the choices[0]
 * case.  Uses USAGE_MAX bytes of stack, as parse_line() does.
 */
int ngx_http_conductor_usage_parse_body(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);

/*
 * The same for a complete body in one piece, read in place: the usage
 * member is read from the end of the body, at a cost that does not grow
 * with the answer, when the members after it prove it is the top-level
 * usage; otherwise parse_full().  Same result as parse_full() for every
 * body that is valid JSON (see parse_tail() for the others).
 */
int ngx_http_conductor_usage_parse_object(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);

/* the read from the end alone: -1 when it cannot tell, u untouched */
int ngx_http_conductor_usage_parse_tail(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);

/*
 * parse_object() by a span scan of the whole body (which validates it),
 * parse_body() for an object of more members than the scan has room for:
 * the fallback, and what tests compare parse_object() with.
 */
int ngx_http_conductor_usage_parse_full(ngx_http_conductor_usage_t *u,
    const unsigned char *p, size_t len);

/*
 * One SSE parser call (a data payload, or a captured usage object with a
 * USAGE_* flag): updates u by the stream rules above.  Returns 1 when
 * usage was taken.  Lines that cannot hold usage cost a byte check only:
 * an event name that is not a usage event, or no "usage" key followed by
 * an object ("usage": null chunks).  Other lines go through the same
 * scanner as the over-long fallback, so both paths find the same object,
 * and jansson parses that object only.
 */
int ngx_http_conductor_usage_parse_line(ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_sse_line_t *line);

/*
 * 1 for the event that ends a stream of its API: "data: [DONE]" (OpenAI
 * chat and completions), message_stop (Anthropic), response.completed,
 * .incomplete or .failed (Responses), and an error event or an error
 * chunk from the provider, which ends a stream too.  Without an "event:"
 * line, the data's first member names it ("type", or "error").
 */
int ngx_http_conductor_usage_terminal(const ngx_http_conductor_sse_line_t
    *line);

/*
 * ngx_http_conductor_sse_handler_pt; data is ngx_http_conductor_usage_t:
 * parse_line(), and u->terminal set by usage_terminal()
 */
void ngx_http_conductor_usage_sse_handler(void *data,
    const ngx_http_conductor_sse_line_t *line);

/*
 * A non-stream body scanned piece by piece with
 * ngx_http_conductor_sse_scan_feed() instead of being buffered: takes the
 * last top-level usage object it captured.  Returns 1 when usage was taken.
 */
int ngx_http_conductor_usage_parse_scan(ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_sse_scan_t *scan);

/*
 * 1 when an OpenAI chat or completions stream data payload is the chunk
 * added by stream_options.include_usage: "choices" is an empty array and
 * "usage" an object.  Never 1 for a chunk with choices.  A byte check
 * rejects ordinary chunks; only a candidate is parsed.
 */
int ngx_http_conductor_usage_only_chunk(const unsigned char *p, size_t len);


#endif /* _NGX_HTTP_CONDUCTOR_USAGE_H_INCLUDED_ */
