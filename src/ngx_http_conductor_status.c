
#include "ngx_http_conductor.h"


char *
ngx_http_conductor_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    return "is not built yet";
}
