/*
 * The unit tests' TAP output: one "ok N - what" line a check, the count
 * for the plan, and the failures for the exit status.
 */

#ifndef _NGX_HTTP_CONDUCTOR_TAP_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_TAP_H_INCLUDED_


#include <stdio.h>


static int  ngx_http_conductor_test_n;
static int  ngx_http_conductor_test_failed;


static void
ngx_http_conductor_test_ok(int cond, const char *desc)
{
    ngx_http_conductor_test_n++;

    if (!cond) {
        ngx_http_conductor_test_failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", ngx_http_conductor_test_n,
           desc);
}


#endif /* _NGX_HTTP_CONDUCTOR_TAP_H_INCLUDED_ */
