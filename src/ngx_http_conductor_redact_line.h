/*
 * Secrets out of a log line.  No nginx include: unit tested and fuzzed on
 * its own; the log writer is in ngx_http_conductor_redact.c.
 *
 * A header is "NAME:" with optional blanks (spaces, tabs) on either side of
 * the colon, NAME being the run of bytes before it up to a blank, CR, LF,
 * '"', ',' or ':' (so "Authorization", "x-api-key" inside nginx's quotes,
 * a line of proxy's request dump, "HTTP_AUTHORIZATION" of a FastCGI param,
 * the "Authorization(x)" of an invalid header line).  When NAME contains
 * "authorization" or "api-key" (any case, '_' as '-'), which covers
 * Authorization, Proxy-Authorization, x-api-key, api-key, x-goog-api-key,
 * its value is replaced by "[redacted]".  The value runs from the first
 * byte after the blanks to the end of the line (CR or LF), the end of the
 * buffer, or a '"' followed by one of these, ',' or ' ' (nginx's closing
 * quote: "...", client: ... and "..." while reading ...).  An empty
 * value stays as it is.  Scanning goes on after the value, so a line may
 * hold several.
 */

#ifndef _NGX_HTTP_CONDUCTOR_REDACT_LINE_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_REDACT_LINE_H_INCLUDED_


#include <stddef.h>


#define NGX_HTTP_CONDUCTOR_REDACTED      "[redacted]"
#define NGX_HTTP_CONDUCTOR_REDACTED_LEN  (sizeof("[redacted]") - 1)


/*
 * The first value to hide in p[0..len): 1 and its span [*start, *end),
 * or 0.  It costs a memchr() for ':' and a look at the few bytes before
 * each colon: cheap enough for every debug line.
 */
int ngx_http_conductor_redact_find(const unsigned char *p, size_t len,
    size_t *start, size_t *end);

/*
 * in[0..len) into out[0..size) with every value to hide replaced; returns
 * the length written.  The result can be longer than the input (a value
 * shorter than "[redacted]"): what does not fit in size is cut, so a
 * shorter size gives a prefix of the same result, and never a byte of a
 * value.
 */
size_t ngx_http_conductor_redact_line(const unsigned char *in, size_t len,
    unsigned char *out, size_t size);


#endif /* _NGX_HTTP_CONDUCTOR_REDACT_LINE_H_INCLUDED_ */
